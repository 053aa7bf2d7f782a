"""Withdrawal: take a scenario out of a benchmark, with a reason, crash-safely and durably.

A withdrawn scenario leaves the benchmark's manifest, its folder is kept aside, and a record says why
and what was removed, so that the benchmark's card (and anyone auditing it) can list it. Like promotion
(`scenario_lib.runs.promotion`), a withdrawal is a sequence of idempotent steps per scenario:

1. copy ``benchmarks/<dest>/<id>/`` to ``withdrawn/<dest>/<id>/`` and commit it there (marker last);
2. create ``benchmarks/<dest>/withdrawn/<id>.json``, the `WithdrawalRecord` (reason, time, the entry it
   removes, where the folder is kept): the commit point; once it exists the scenario is withdrawn;
3. delete ``benchmarks/<dest>/entries/<id>.json``;
4. rebuild ``benchmarks/<dest>/manifest.json`` from the entries with compare-and-swap (`rebuild_manifest`),
   then the derived files (`scenario_lib.runs.publication`: the index, the card with the withdrawal);
5. delete ``benchmarks/<dest>/<id>/`` (marker first).

A crash before step 2 leaves the benchmark as it was (plus a kept-aside copy nobody reads): re-running
`withdraw` redoes the copy. After step 2, re-running finds the record and finishes steps 3-5, each of which
is idempotent; a record already there is kept (the first reason stands). Only a scenario the manifest lists
(or one with a record) can be withdrawn, so step 4 always changes the manifest, and its compare-and-swap
orders it against concurrent promotions exactly as promotions are ordered against each other. Withdrawing
the same scenario twice at the same time is not supported, as with promotion. The kept-aside copy lies
outside ``staging/`` and ``benchmarks/``, so nothing that lists scenarios (the agent's examples,
`scenarios list`) sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scenario_lib.errors import ConfigError, StoreError, name_list
from scenario_lib.runs.promotion import ManifestEntry, parse_entry, rebuild_manifest, require_manifest
from scenario_lib.store.commit import copy_committed, is_committed, uncommit
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.records import parse_record
from scenario_lib.store.layout import (
    benchmark_entry_key,
    benchmark_manifest_key,
    benchmark_prefix,
    benchmark_withdrawal_key,
    benchmark_withdrawals_prefix,
    parse_scenario_id,
    validate_dest,
    withdrawn_folder_prefix,
)

WITHDRAWAL_FORMAT_VERSION = 1
MAX_REASON_CHARS = 2000


class WithdrawalRecord(BaseModel):
    """Why and when a scenario left a benchmark, and what was removed (``benchmarks/<dest>/withdrawn/<id>.json``)."""

    model_config = ConfigDict(frozen=True)

    format_version: int = WITHDRAWAL_FORMAT_VERSION
    dest: str
    scenario_id: str
    reason: str
    withdrawn_at: datetime
    entry: ManifestEntry = Field(description="The benchmark entry the withdrawal removed.")
    kept_at: str = Field(description="Key of the folder kept aside, relative to the store root.")

    @field_validator("dest")
    @classmethod
    def _check_dest(cls, value: str) -> str:
        return validate_dest(value)

    @field_validator("scenario_id")
    @classmethod
    def _check_scenario_id(cls, value: str) -> str:
        parse_scenario_id(value)
        return value


class WithdrawalResult(BaseModel):
    """What `withdraw` did: ids newly withdrawn, ids that were already, and how many entries the manifest kept."""

    model_config = ConfigDict(frozen=True)

    dest: str
    withdrawn: list[str]
    already_withdrawn: list[str]
    records: list[WithdrawalRecord]
    manifest_url: str
    entry_count: int




def parse_withdrawal(data: bytes, *, url: str) -> WithdrawalRecord:
    """Parse a withdrawal record read from ``url``; `StoreError` when corrupt or from a newer format."""
    return parse_record(
        WithdrawalRecord,
        data,
        url=url,
        what="withdrawal record",
        fix="restore it from a copy",
        format_version=WITHDRAWAL_FORMAT_VERSION,
    )


def read_withdrawals(store: DatasetStore, dest: str) -> list[WithdrawalRecord]:
    """Every scenario withdrawn from ``dest``, by scenario id (for the benchmark's card and `scenarios verify`)."""
    records = []
    for key in store.list_files(benchmark_withdrawals_prefix(dest), recursive=False):
        if key.endswith(".json"):
            records.append(parse_withdrawal(store.read_bytes(key), url=store.url_for(key)))
    return sorted(records, key=lambda record: record.scenario_id)


def _read_record(store: DatasetStore, dest: str, scenario_id: str) -> WithdrawalRecord | None:
    key = benchmark_withdrawal_key(dest, scenario_id)
    data = store.read_bytes_if_exists(key)
    return None if data is None else parse_withdrawal(data, url=store.url_for(key))


def withdraw(store: DatasetStore, scenario_ids: Sequence[str], *, dest: str, reason: str) -> WithdrawalResult:
    """Withdraw ``scenario_ids`` from the benchmark ``dest`` with ``reason`` (see the module doc for the steps).

    Idempotent: a scenario already withdrawn is reported in ``already_withdrawn`` and its leftover steps are
    finished. Raises `ConfigError` for an empty reason, an unknown benchmark or an id the benchmark does not
    list, `StoreError` for store failures or a corrupt manifest, entry or record.
    """
    validate_dest(dest)
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ConfigError(
            "a withdrawal needs a reason: say why the scenario leaves the benchmark (e.g. the finding of `scenarios verify`)"
        )
    if len(text) > MAX_REASON_CHARS:
        raise ConfigError(
            f"the reason is {len(text)} characters; keep it under {MAX_REASON_CHARS} (it goes into the benchmark's card)"
        )
    if isinstance(scenario_ids, str) or not scenario_ids:
        raise ConfigError("name the scenarios to withdraw: a list of scenario ids such as ['run-1_0']")
    ids = sorted(set(scenario_ids))
    for scenario_id in ids:
        parse_scenario_id(scenario_id)
    manifest, _ = require_manifest(store, dest)
    listed = {entry.scenario_id: entry for entry in manifest.entries}
    existing = {scenario_id: _read_record(store, dest, scenario_id) for scenario_id in ids}
    unknown = [sid for sid in ids if sid not in listed and existing[sid] is None]
    if unknown:
        raise ConfigError(
            f"benchmark {dest!r} does not list scenario(s) {name_list(unknown)}; it holds {name_list(manifest.scenario_ids)} "
            "(a promotion still running is listed once `scenarios promote` finishes)"
        )

    withdrawn: list[str] = []
    already: list[str] = []
    records: list[WithdrawalRecord] = []
    for scenario_id in ids:
        record = existing[scenario_id]
        created = False
        if record is None:
            record, created = _commit_withdrawal(store, dest, listed[scenario_id], text)
        (withdrawn if created else already).append(scenario_id)
        records.append(record)
        store.delete(benchmark_entry_key(dest, scenario_id))
    rebuilt = rebuild_manifest(store, dest)
    # Imported here: publication reads the withdrawal records of this module.
    from scenario_lib.runs.publication import rebuild_benchmark_files

    rebuild_benchmark_files(store, dest, manifest=rebuilt)  # the card lists it as withdrawn, the index no more
    for scenario_id in ids:
        uncommit(store, benchmark_prefix(dest, scenario_id))
    return WithdrawalResult(
        dest=dest,
        withdrawn=withdrawn,
        already_withdrawn=already,
        records=records,
        manifest_url=store.url_for(benchmark_manifest_key(dest)),
        entry_count=len(rebuilt.entries),
    )


def _commit_withdrawal(
    store: DatasetStore, dest: str, listed: ManifestEntry, reason: str
) -> tuple[WithdrawalRecord, bool]:
    """Steps 1 and 2: keep the folder aside, then create the record (the commit point).

    Returns the record that stands and whether this call created it.
    """
    scenario_id = listed.scenario_id
    entry_key = benchmark_entry_key(dest, scenario_id)
    try:
        # The entry file, not the manifest's copy, is what the withdrawal removes.
        entry = parse_entry(store.read_bytes(entry_key), url=store.url_for(entry_key))
    except ObjectNotFoundError:
        entry = listed
    folder = benchmark_prefix(dest, scenario_id)
    kept = withdrawn_folder_prefix(dest, scenario_id)
    if is_committed(store, folder):
        copy_committed(store, folder, kept)
    elif not is_committed(store, kept):
        raise StoreError(
            f"{store.url_for(folder)} is listed in benchmark {dest!r} but is not a committed scenario folder, and no copy "
            f"is kept at {store.url_for(kept)}; promote the scenario again, then withdraw it"
        )
    record = WithdrawalRecord(
        dest=dest,
        scenario_id=scenario_id,
        reason=reason,
        withdrawn_at=datetime.now(timezone.utc),
        entry=entry,
        kept_at=kept,
    )
    key = benchmark_withdrawal_key(dest, scenario_id)
    if store.create_bytes(key, record.model_dump_json(indent=1).encode()):
        return record, True
    # Another withdrawal of this scenario committed in between: its record (and reason) stands.
    found = _read_record(store, dest, scenario_id)
    if found is None:
        raise StoreError(f"{store.url_for(key)} could not be created yet does not exist; check the store, then withdraw again")
    return found, False


__all__ = [
    "MAX_REASON_CHARS",
    "WITHDRAWAL_FORMAT_VERSION",
    "WithdrawalRecord",
    "WithdrawalResult",
    "parse_withdrawal",
    "read_withdrawals",
    "withdraw",
]
