"""Stored JSON records (manifests, entries, withdrawals, evaluations) parsed in one way.

Whatever reads a record from a store gets a `StoreError` that names the file, says what is wrong with it
(not JSON, written by a newer scenario_lib, or not a record of its kind) and how to fix it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from scenario_lib.errors import StoreError

if TYPE_CHECKING:
    from scenario_lib.store.dataset import DatasetStore

RecordT = TypeVar("RecordT", bound=BaseModel)


def parse_record(
    model: type[RecordT],
    data: bytes,
    *,
    url: str,
    what: str,
    fix: str,
    format_version: int | None = None,
    format_name: str | None = None,
) -> RecordT:
    """``data`` read from ``url`` as a ``model``: ``what`` names the record in messages ("scenario
    manifest"), ``fix`` says what to do about a broken one, ``format_version`` is the newest version this
    package reads (a record without one is read as the oldest) and ``format_name`` names the format
    (default: ``what``)."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise StoreError(f"{what} {url} is not valid JSON ({type(err).__name__}: {str(err)[:200]}); {fix}") from err
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if format_version is not None and type(version) is int and version > format_version:
        raise StoreError(
            f"{what} {url} has format_version {version}, newer than this scenario_lib understands "
            f"({format_version}); upgrade scenario_lib to read it"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise StoreError(
            f"{what} {url} does not match the {format_name or what} format: {first['msg']} at {first['loc']}; {fix}"
        ) from err


def read_record(
    store: DatasetStore,
    key: str,
    model: type[RecordT],
    *,
    what: str,
    fix: str,
    format_version: int | None = None,
) -> RecordT:
    """The record at ``key`` of ``store`` (see `parse_record`); `ObjectNotFoundError` when there is none."""
    return parse_record(
        model, store.read_bytes(key), url=store.url_for(key), what=what, fix=fix, format_version=format_version
    )


__all__ = ["parse_record", "read_record"]
