"""Committed folders: a scenario folder appears in the store complete or not at all.

A folder is committed by writing a ``_COMMITTED`` marker after every other file of it is in place;
readers (`list_scenarios`, `is_committed`) ignore folders without the marker, so a half-written
scenario is never visible, on an object store with no atomic rename as on a local disk.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from scenario_lib.errors import ConfigError
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import COMMIT_MARKER, TMP_PREFIX, join_key, validate_key


def _marker_bytes(files: Sequence[str]) -> bytes:
    payload = {"committed_at": datetime.now(timezone.utc).isoformat(), "files": sorted(files)}
    return json.dumps(payload, indent=1).encode()


def is_committed(store: DatasetStore, prefix: str) -> bool:
    """Whether the scenario folder `prefix` is complete (has its commit marker)."""
    return store.exists(join_key(prefix, COMMIT_MARKER))


def uncommit(store: DatasetStore, prefix: str) -> int:
    """Delete the folder `prefix`, marker first so readers never see it half-deleted; returns files deleted."""
    return store.delete_prefix(prefix, first=COMMIT_MARKER)


def _tmp_root_for(dest_prefix: str) -> str:
    # One tmp area per destination: a re-run after a crash finds and clears its predecessor's upload.
    return f"{TMP_PREFIX}/{hashlib.sha256(dest_prefix.encode()).hexdigest()[:24]}"


def commit_scenario(store: DatasetStore, local_dir: Path, dest_prefix: str) -> None:
    """Upload the scenario folder `local_dir` to `dest_prefix` so that it appears complete or not at all.

    A destination that holds no file (every new scenario) takes the upload directly: clear stale uploads
    for this destination, upload into it, write ``_COMMITTED`` last; until the marker lands, readers
    ignore the folder.

    A destination that holds files (a committed scenario re-validated in place, or what a crash left)
    keeps its committed version visible through the slow, failure-prone upload: clear stale uploads,
    upload to ``.tmp/<dest-hash>/<uuid>/``, delete the destination's marker then its files, copy
    server-side into it, drop the upload, and write ``_COMMITTED`` last.

    A crash at any step leaves either no marker (invisible) or a complete folder, and re-running
    converges. The upload is dropped before the marker is written: a folder that is committed is never
    committed again, so an upload left behind by a crash after its marker would stay in ``.tmp/`` for
    good. Two commits racing to one destination are not supported.
    """
    dest = validate_key(dest_prefix)
    local_dir = Path(local_dir)
    if (local_dir / COMMIT_MARKER).exists():
        raise ConfigError(f"cannot commit {local_dir}: it contains a file named {COMMIT_MARKER!r}, which is reserved")
    occupied = bool(store.list_files(dest))
    tmp_root = _tmp_root_for(dest)
    store.delete_prefix(tmp_root)  # an upload of an earlier attempt that a crash left behind
    upload = f"{tmp_root}/{uuid.uuid4().hex}" if occupied else dest
    uploaded = store.put_dir(local_dir, upload)
    if not uploaded:
        raise ConfigError(f"cannot commit {local_dir}: the folder holds no files")
    names = [key[len(upload) + 1 :] for key in uploaded]
    if occupied:
        uncommit(store, dest)
        store.copy_files([(f"{upload}/{name}", f"{dest}/{name}") for name in names])
        store.delete_prefix(tmp_root)
    store.write_bytes(f"{dest}/{COMMIT_MARKER}", _marker_bytes(names))


def copy_committed(store: DatasetStore, src_prefix: str, dest_prefix: str) -> list[str]:
    """Copy the committed folder `src_prefix` to `dest_prefix` and commit it there; returns the file names.

    A server-side copy needs no tmp stage: the destination is cleared (marker first) and its marker is
    written last, so it is invisible until complete. ObjectNotFoundError if `src_prefix` is not committed.
    """
    src, dest = validate_key(src_prefix), validate_key(dest_prefix)
    names = [key[len(src) + 1 :] for key in store.list_files(src)]
    if COMMIT_MARKER not in names:
        raise ObjectNotFoundError(f"{store.url_for(src)} is not a committed scenario folder (no {COMMIT_MARKER})")
    names.remove(COMMIT_MARKER)
    uncommit(store, dest)
    store.copy_files([(f"{src}/{name}", f"{dest}/{name}") for name in names])
    store.write_bytes(f"{dest}/{COMMIT_MARKER}", _marker_bytes(names))
    return names


def list_scenarios(store: DatasetStore, prefix: str, *, named: str = "") -> list[str]:
    """Sorted names of the committed folders directly under `prefix` (e.g. scenario ids under 'staging');
    with ``named``, only those whose names start with it (listing only them)."""
    base = validate_key(prefix)
    names = set()
    for key in store.list_files(base, named=named):
        parts = key[len(base) + 1 :].split("/")
        if len(parts) == 2 and parts[1] == COMMIT_MARKER:
            names.add(parts[0])
    return sorted(names)


__all__ = ["commit_scenario", "copy_committed", "is_committed", "list_scenarios", "uncommit"]
