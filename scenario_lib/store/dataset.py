"""The dataset store: one fsspec code path for a local folder and an S3 bucket (MinIO, SeaweedFS, AWS).

Layout under the store root::

    staging/{run_id}_{seed}/                  a validated scenario folder (committed, see below)
    failures/{run_id}_{seed}_a{attempt}/      a failed attempt with its reports
    runs/{run_id}.json                        a run record
    benchmarks/{dest}/{scenario_id}/          a promoted scenario (committed)
    benchmarks/{dest}/entries/{scenario_id}.json
    benchmarks/{dest}/manifest.json
    .tmp/                                     uploads in flight; never read by consumers

A *scenario folder* is committed by writing a ``_COMMITTED`` marker after every other file of it is in
place; readers (`list_scenarios`, `is_committed`) ignore folders without the marker, so a half-written
scenario is never visible, on an object store with no atomic rename as on a local disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.asyn import sync
from fsspec.spec import AbstractFileSystem

from scenario_lib.errors import ConfigError, StoreError

COMMIT_MARKER = "_COMMITTED"
TMP_PREFIX = ".tmp"
STAGING_PREFIX = "staging"
FAILURES_PREFIX = "failures"
RUNS_PREFIX = "runs"
BENCHMARKS_PREFIX = "benchmarks"
TRACES_PREFIX = "traces"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCENARIO_ID_RE = re.compile(r"^(?P<run_id>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})_(?P<seed>[0-9]{1,19})$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Error codes by which S3 servers refuse a conditional write; AWS answers 409 when two conditional
# writes to one key race, 412 when the condition is false.
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# botocore's "standard" retry mode retries throttling, 5xx and connection errors with jittered
# exponential backoff; three attempts keep an unreachable endpoint failing within a few seconds.
_S3_MAX_ATTEMPTS = 3
_S3_CONNECT_TIMEOUT_S = 5.0
_S3_READ_TIMEOUT_S = 30.0
_S3_COPY_CONCURRENCY = 16


class ObjectNotFoundError(StoreError, FileNotFoundError):
    """The key does not exist in the store (also a FileNotFoundError)."""


class StoreBackend(str, Enum):
    """Where the store keeps its bytes."""

    LOCAL = "file"
    S3 = "s3"


# --- ids and keys -----------------------------------------------------------------------------------


def validate_name(value: str, *, kind: str = "name") -> str:
    """Return `value` if it is a safe single path segment (run id, dest name), else raise ConfigError."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"invalid {kind} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter "
            "or digit and without '..' (e.g. 'run-2024-01' or 'v1')"
        )
    return value


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if valid, else raise ConfigError."""
    return validate_name(run_id, kind="run id")


def validate_dest(dest: str) -> str:
    """Return the benchmark destination name `dest` if valid, else raise ConfigError."""
    return validate_name(dest, kind="benchmark destination")


def make_scenario_id(run_id: str, seed: int) -> str:
    """The scenario id ``{run_id}_{seed}``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"invalid seed {seed!r}: use a non-negative integer")
    return f"{validate_run_id(run_id)}_{seed}"


def parse_scenario_id(scenario_id: str) -> tuple[str, int]:
    """Split a scenario id ``{run_id}_{seed}`` into ``(run_id, seed)``; ConfigError if malformed."""
    match = _SCENARIO_ID_RE.fullmatch(scenario_id) if isinstance(scenario_id, str) else None
    if match is None or ".." in scenario_id:
        raise ConfigError(
            f"invalid scenario id {scenario_id!r}: expected '{{run_id}}_{{seed}}' such as 'run-1_42' "
            "(run id: 1-64 characters from A-Z a-z 0-9 _ . -; seed: a non-negative integer)"
        )
    return match["run_id"], int(match["seed"])


def validate_key(key: str, *, allow_root: bool = False) -> str:
    """Return `key` normalized (no trailing '/') if it is a safe relative key, else raise ConfigError.

    Rejected: absolute keys, backslashes, '.', '..' and empty segments. The empty key (the store root)
    is allowed only with `allow_root`.
    """
    if not isinstance(key, str):
        raise ConfigError(f"invalid store key {key!r}: expected a string such as 'staging/run-1_0'")
    stripped = key[:-1] if key.endswith("/") else key
    if stripped == "":
        if allow_root:
            return ""
        raise ConfigError("empty store key: name a file or folder under the store root, e.g. 'staging/run-1_0'")
    problem = None
    if stripped.startswith("/"):
        problem = "it is absolute"
    elif "\\" in stripped:
        problem = "it contains a backslash"
    elif "\x00" in stripped:
        problem = "it contains a NUL byte"
    else:
        for segment in stripped.split("/"):
            if segment in ("", ".", ".."):
                problem = f"it has a {segment!r} segment" if segment else "it has an empty segment ('//')"
                break
    if problem:
        raise ConfigError(
            f"invalid store key {key!r}: {problem}; use a relative key with '/' separators, "
            "e.g. 'staging/run-1_0/scene.xml'"
        )
    return stripped


def join_key(*parts: str) -> str:
    """Join key segments with '/', skipping empty ones, and validate the result."""
    return validate_key("/".join(part.strip("/") for part in parts if part.strip("/")), allow_root=True)


def staging_prefix(scenario_id: str) -> str:
    """``staging/{scenario_id}``."""
    parse_scenario_id(scenario_id)
    return f"{STAGING_PREFIX}/{scenario_id}"


def failure_prefix(scenario_id: str, attempt: int) -> str:
    """``failures/{scenario_id}_a{attempt}``."""
    parse_scenario_id(scenario_id)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ConfigError(f"invalid attempt number {attempt!r}: use a non-negative integer")
    return f"{FAILURES_PREFIX}/{scenario_id}_a{attempt}"


def run_record_key(run_id: str) -> str:
    """``runs/{run_id}.json``."""
    return f"{RUNS_PREFIX}/{validate_run_id(run_id)}.json"


def benchmark_prefix(dest: str, scenario_id: str) -> str:
    """``benchmarks/{dest}/{scenario_id}``."""
    parse_scenario_id(scenario_id)
    return f"{BENCHMARKS_PREFIX}/{validate_dest(dest)}/{scenario_id}"


def benchmark_entries_prefix(dest: str) -> str:
    """``benchmarks/{dest}/entries``."""
    return f"{BENCHMARKS_PREFIX}/{validate_dest(dest)}/entries"


def benchmark_entry_key(dest: str, scenario_id: str) -> str:
    """``benchmarks/{dest}/entries/{scenario_id}.json``."""
    parse_scenario_id(scenario_id)
    return f"{benchmark_entries_prefix(dest)}/{scenario_id}.json"


def benchmark_manifest_key(dest: str) -> str:
    """``benchmarks/{dest}/manifest.json``."""
    return f"{BENCHMARKS_PREFIX}/{validate_dest(dest)}/manifest.json"


# --- the store ----------------------------------------------------------------------------------------


def _redact_url(url: str) -> str:
    """`url` without any user:password part, fit for error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _precondition_failed(err: BaseException) -> bool:
    """Whether `err` (as raised by s3fs) is an S3 refusal of a conditional write."""
    for candidate in (err, err.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if error.get("Code") in _PRECONDITION_CODES or status in ("409", "412"):
                return True
    return False


@dataclass(frozen=True)
class _S3Location:
    bucket: str
    prefix: str


class DatasetStore:
    """Keys under a root in one fsspec filesystem: a local folder or an S3 bucket/prefix.

    Keys are relative, '/'-separated (see `validate_key`). Every method works the same on both
    backends; only atomic writes and compare-and-swap differ underneath (temp file + ``os.replace``
    and ``fcntl`` locks locally, conditional PUTs on S3). The instance is safe to share between threads.
    """

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        *,
        backend: StoreBackend,
        url: str,
        endpoint_url: str | None = None,
    ) -> None:
        self._fs = fs
        self._root = root.rstrip("/")
        self.backend = backend
        self.url = url
        self.endpoint_url = endpoint_url
        self._transport_errors: tuple[type[BaseException], ...] = (OSError,)
        if backend is StoreBackend.S3:
            from botocore.exceptions import BotoCoreError, ClientError

            self._transport_errors = (OSError, BotoCoreError, ClientError)

    # construction

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = True,
        max_attempts: int = _S3_MAX_ATTEMPTS,
    ) -> DatasetStore:
        """Open the store at `url`: ``file:///abs``, ``file://./relative``, a plain path, or ``s3://bucket/prefix``.

        For S3, `endpoint_url` points at MinIO/SeaweedFS (None: AWS); without keys the usual AWS
        credential chain applies. The bucket is created when missing (unless `create_bucket` is False).
        `max_attempts` bounds the tries per S3 request (retries back off exponentially with jitter).
        Raises ConfigError for a malformed URL and StoreError when the store cannot be reached or used.
        """
        if not isinstance(url, str) or not url.strip():
            raise ConfigError("empty store URL: use 'file:///abs/path', 'file://./relative' or 's3://bucket/prefix'")
        url = url.strip()
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "s3":
            return cls._open_s3(
                url,
                endpoint_url=endpoint_url,
                access_key=access_key,
                secret_key=secret_key,
                create_bucket=create_bucket,
                max_attempts=max_attempts,
            )
        if scheme not in ("", "file"):
            raise ConfigError(f"unsupported store URL {_redact_url(url)!r}: use 'file://...', a plain path or 's3://...'")
        return cls._open_local(url)

    @classmethod
    def _open_local(cls, url: str) -> DatasetStore:
        raw = url[len("file://") :] if url.lower().startswith("file://") else url
        if not raw:
            raise ConfigError(f"store URL {url!r} names no folder: use 'file:///abs/path' or 'file://./relative'")
        root = Path(raw).expanduser().resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / TMP_PREFIX).mkdir(exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"cannot create the store folder {root} (from {url!r}): {err.strerror or err}; "
                "check that the path is writable or point the store URL elsewhere"
            ) from err
        fs = fsspec.filesystem("file", auto_mkdir=True)
        return cls(fs, str(root), backend=StoreBackend.LOCAL, url=f"file://{root}")

    @classmethod
    def _open_s3(
        cls,
        url: str,
        *,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        create_bucket: bool,
        max_attempts: int,
    ) -> DatasetStore:
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        location = _parse_s3_url(url)
        import s3fs

        # Region is left to botocore on purpose: passing region_name makes bucket creation send a
        # LocationConstraint that moto and some MinIO setups refuse. The listings cache is off
        # because threads share this filesystem and must see each other's writes.
        fs = s3fs.S3FileSystem(
            key=access_key,
            secret=secret_key,
            endpoint_url=endpoint_url,
            use_listings_cache=False,
            skip_instance_cache=True,
            config_kwargs={
                "retries": {"max_attempts": max_attempts, "mode": "standard"},
                "connect_timeout": _S3_CONNECT_TIMEOUT_S,
                "read_timeout": _S3_READ_TIMEOUT_S,
            },
        )
        # botocore already retries with backoff; s3fs's own retry loop on top would multiply attempts.
        fs.retries = 1
        root = f"{location.bucket}/{location.prefix}" if location.prefix else location.bucket
        store = cls(fs, root, backend=StoreBackend.S3, url=url, endpoint_url=endpoint_url)
        store._ensure_bucket(location.bucket, create=create_bucket)
        return store

    def _ensure_bucket(self, bucket: str, *, create: bool) -> None:
        try:
            self._fs.call_s3("head_bucket", Bucket=bucket)
            return
        except FileNotFoundError as err:
            if not create:
                raise StoreError(
                    f"bucket {bucket!r} of store {self.describe()} does not exist; create it, "
                    "or let the store create it (create_bucket=True)"
                ) from err
        except PermissionError as err:
            raise StoreError(
                f"access denied to bucket {bucket!r} of store {self.describe()}: check the access key and "
                "secret key (SCENARIOS_STORE__ACCESS_KEY / SCENARIOS_STORE__SECRET_KEY) and the bucket policy"
            ) from err
        except self._transport_errors as err:
            from botocore.exceptions import NoCredentialsError, PartialCredentialsError

            if isinstance(err, NoCredentialsError | PartialCredentialsError):
                raise StoreError(
                    f"no usable S3 credentials for store {self.describe()} ({err}); set the access key and secret "
                    "key (SCENARIOS_STORE__ACCESS_KEY / SCENARIOS_STORE__SECRET_KEY)"
                ) from err
            raise self._unreachable(err) from err
        try:
            self._fs.call_s3("create_bucket", Bucket=bucket)
        except self._transport_errors as err:
            if isinstance(err, FileExistsError) or "BucketAlreadyOwnedByYou" in repr(err.__cause__ or err):
                return  # created concurrently by another process
            raise StoreError(
                f"bucket {bucket!r} of store {self.describe()} is missing and could not be created ({err}); "
                "create it yourself or grant s3:CreateBucket"
            ) from err

    def _unreachable(self, err: BaseException) -> StoreError:
        return StoreError(
            f"cannot reach the dataset store {self.describe()}: {type(err).__name__}: {err}; "
            "check that the server is running and the endpoint URL, bucket and credentials are right"
        )

    # naming

    def describe(self) -> str:
        """The store URL plus its endpoint, without credentials, for messages."""
        if self.endpoint_url:
            return f"{self.url} (endpoint {_redact_url(self.endpoint_url)})"
        return self.url

    def __repr__(self) -> str:
        return f"DatasetStore({self.describe()!r})"

    @property
    def local_root(self) -> Path | None:
        """The root folder of a local store; None for S3."""
        return Path(self._root) if self.backend is StoreBackend.LOCAL else None

    def url_for(self, path: str) -> str:
        """A human-readable URL of `path` (``file:///...`` or ``s3://bucket/...``)."""
        full = self._full(validate_key(path, allow_root=True))
        return f"file://{full}" if self.backend is StoreBackend.LOCAL else f"s3://{full}"

    def _full(self, key: str) -> str:
        return f"{self._root}/{key}" if key else self._root

    def _relative(self, full: str) -> str:
        full = full.rstrip("/")
        root = self._root + "/"
        if not full.startswith(root):
            raise StoreError(f"listing of {self.describe()} returned {full!r}, outside the store root")
        return full[len(root) :]

    @contextlib.contextmanager
    def _io(self, action: str, key: str) -> Iterator[None]:
        """Turn low-level I/O errors of `action` on `key` into StoreError / ObjectNotFoundError."""
        try:
            yield
        except (StoreError, ConfigError):
            raise
        except FileNotFoundError as err:
            raise ObjectNotFoundError(f"{self.url_for(key)} does not exist (while trying to {action})") from err
        except PermissionError as err:
            raise StoreError(
                f"permission denied to {action} {self.url_for(key)}: check the store credentials and permissions"
            ) from err
        except self._transport_errors as err:
            raise StoreError(
                f"failed to {action} {self.url_for(key)} in store {self.describe()}: {type(err).__name__}: {err}; "
                "check that the store is reachable and writable, then retry"
            ) from err

    # local helpers: atomic writes and locks

    def _local_tmp_path(self) -> str:
        # Same filesystem as the target, so os.replace / os.link are atomic.
        return os.path.join(self._root, TMP_PREFIX, f"{uuid.uuid4().hex}.partial")

    def _write_local_tmp(self, data: bytes) -> str:
        tmp = self._local_tmp_path()
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    @contextlib.contextmanager
    def _local_dir_lock(self, full: str) -> Iterator[None]:
        # An exclusive flock on the parent directory serializes writers of that directory across
        # threads and processes (each os.open is its own open file description); no lock files litter
        # the listing.
        parent = os.path.dirname(full)
        os.makedirs(parent, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # bytes

    def read_bytes(self, path: str) -> bytes:
        """The content of `path`; ObjectNotFoundError if absent."""
        key = validate_key(path)
        with self._io("read", key):
            if self.backend is StoreBackend.S3:
                return self._s3_get_with_etag(self._full(key))[0]  # s3fs cat_file adds a HEAD first
            return bytes(self._fs.cat_file(self._full(key)))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write `data` to `path` atomically (readers see the old or the new content, never a mix)."""
        key = validate_key(path)
        full = self._full(key)
        with self._io("write", key):
            if self.backend is StoreBackend.LOCAL:
                tmp = self._write_local_tmp(data)
                try:
                    with self._local_dir_lock(full):
                        os.replace(tmp, full)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            else:
                self._fs.pipe_file(full, data)  # a single PUT is atomic on S3

    def create_bytes(self, path: str, data: bytes) -> bool:
        """Write `data` to `path` only if absent; True if written, False if `path` already existed."""
        key = validate_key(path)
        full = self._full(key)
        with self._io("create", key):
            if self.backend is StoreBackend.LOCAL:
                # fsspec's local mode="create" is not atomic: write a temp file and hard-link it in,
                # which fails with EEXIST if the name is taken and never exposes a partial file.
                tmp = self._write_local_tmp(data)
                try:
                    os.makedirs(os.path.dirname(full), exist_ok=True)
                    os.link(tmp, full)
                    return True
                except FileExistsError:
                    return False
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            try:
                self._fs.pipe_file(full, data, mode="create")  # sends If-None-Match: *
                return True
            except FileExistsError:
                return False
            except OSError as err:
                if _precondition_failed(err):
                    return False
                raise

    def read_with_etag(self, path: str) -> tuple[bytes, str]:
        """The content of `path` and an opaque version tag for `replace_if_match`; ObjectNotFoundError if absent."""
        key = validate_key(path)
        full = self._full(key)
        with self._io("read", key):
            if self.backend is StoreBackend.LOCAL:
                with open(full, "rb") as handle:
                    data = handle.read()
                return data, hashlib.sha256(data).hexdigest()
            return self._s3_get_with_etag(full)

    def _s3_get_with_etag(self, full: str) -> tuple[bytes, str]:
        # One GET gives body and ETag of the same version; a HEAD then GET could pair a new body with
        # an old tag and let a stale compare-and-swap through.
        bucket, object_key, _ = self._fs.split_path(full)
        response: dict[str, Any] = self._fs.call_s3("get_object", Bucket=bucket, Key=object_key)

        async def read_body() -> bytes:
            async with response["Body"] as body:
                return bytes(await body.read())

        return sync(self._fs.loop, read_body), str(response["ETag"])

    def replace_if_match(self, path: str, data: bytes, etag: str) -> bool:
        """Overwrite `path` with `data` only if its version tag is still `etag` (compare-and-swap).

        Returns False when `path` changed or vanished since `read_with_etag`; the caller re-reads and retries.
        """
        key = validate_key(path)
        full = self._full(key)
        with self._io("replace", key):
            if self.backend is StoreBackend.LOCAL:
                tmp = self._write_local_tmp(data)
                try:
                    with self._local_dir_lock(full):
                        try:
                            with open(full, "rb") as handle:
                                current = hashlib.sha256(handle.read()).hexdigest()
                        except FileNotFoundError:
                            return False
                        if current != etag:
                            return False
                        os.replace(tmp, full)
                        return True
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            try:
                self._fs.pipe_file(full, data, IfMatch=etag)  # single PUT with If-Match
                return True
            except FileNotFoundError:
                return False
            except OSError as err:
                if _precondition_failed(err):
                    return False
                raise

    # files and prefixes

    def exists(self, path: str) -> bool:
        """Whether a file (not a folder) exists at `path`."""
        key = validate_key(path)
        with self._io("check", key):
            return bool(self._fs.isfile(self._full(key)))

    def list_files(self, prefix: str = "", recursive: bool = True) -> list[str]:
        """Sorted keys of the files under the folder `prefix` ('' for the whole store).

        Only files count: empty "directories" some servers keep after deletes are skipped. `prefix`
        is a folder, not a string prefix: 'staging/run-1_1' does not list 'staging/run-1_10/...'.
        """
        key = validate_key(prefix, allow_root=True)
        full = self._full(key)
        with self._io("list", key):
            if recursive and self.backend is StoreBackend.S3 and key:
                # List the parent with a "<name>/" prefix: s3fs answers an empty plain find() with extra
                # HEAD + LIST requests to check whether the path is a file, which doubles listing cost.
                parent, _, name = full.rpartition("/")
                found = self._fs.find(parent, withdirs=False, detail=True, prefix=f"{name}/")
                entries = list(found.values()) if isinstance(found, dict) else []
            elif recursive:
                found = self._fs.find(full, withdirs=False, detail=True)
                entries = list(found.values()) if isinstance(found, dict) else []
            else:
                try:
                    entries = list(self._fs.ls(full, detail=True))
                except FileNotFoundError:
                    entries = []
        folder = full + "/"
        names = [
            self._relative(entry["name"])
            for entry in entries
            if entry.get("type") == "file" and entry["name"].startswith(folder) and not entry["name"].endswith("/")
        ]
        return sorted(names)

    def delete(self, path: str) -> None:
        """Delete the file `path` if it exists."""
        key = validate_key(path)
        with self._io("delete", key), contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._full(key))

    def delete_prefix(self, prefix: str, *, first: str | None = None) -> int:
        """Delete every file under the folder `prefix`; returns how many were deleted.

        `first` names a file inside the folder (e.g. the commit marker) deleted on its own before the
        others, so a crash midway never leaves it next to an incomplete folder.
        """
        key = validate_key(prefix)  # the root is refused on purpose: it would wipe the store
        files = self.list_files(key)
        with self._io("delete", key):
            first_key = f"{key}/{validate_key(first)}" if first else None
            if first_key in files:
                self._fs.rm_file(self._full(first_key))
            rest = [name for name in files if name != first_key]
            if rest:
                self._fs.rm([self._full(name) for name in rest])
            if self.backend is StoreBackend.LOCAL:
                # Remove the emptied folders too, so a deleted scenario leaves no trace locally.
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm(self._full(key), recursive=True)
        return len(files)

    def copy_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Copy each ``(src, dst)`` key pair inside the store (server-side on S3), in one batch."""
        if not pairs:
            return
        sources = [self._full(validate_key(src)) for src, _ in pairs]
        targets = [self._full(validate_key(dst)) for _, dst in pairs]
        with self._io("copy", pairs[0][0]):
            if self.backend is StoreBackend.S3:
                sync(self._fs.loop, self._s3_copy_objects, list(zip(sources, targets)))
            else:
                self._fs.copy(sources, targets)

    async def _s3_copy_objects(self, pairs: list[tuple[str, str]]) -> None:
        # One CopyObject per file, concurrently. s3fs's copy() first HEADs every source to pick a copy
        # method by size; scenario files are far below CopyObject's 5 GiB limit, so that HEAD is skipped
        # and only a refused copy falls back to s3fs's size-aware path.
        limit = asyncio.Semaphore(_S3_COPY_CONCURRENCY)

        async def copy_one(source: str, target: str) -> None:
            src_bucket, src_key, _ = self._fs.split_path(source)
            dst_bucket, dst_key, _ = self._fs.split_path(target)
            async with limit:
                try:
                    await self._fs._call_s3(
                        "copy_object",
                        Bucket=dst_bucket,
                        Key=dst_key,
                        CopySource={"Bucket": src_bucket, "Key": src_key},
                    )
                except OSError as err:
                    if isinstance(err, FileNotFoundError | PermissionError):
                        raise
                    await self._fs._cp_file(source, target)

        await asyncio.gather(*(copy_one(source, target) for source, target in pairs))

    def copy_prefix(self, src: str, dst: str) -> list[str]:
        """Copy every file under `src` to the same relative key under `dst`; returns the relative names."""
        src_key, dst_key = validate_key(src), validate_key(dst)
        names = [name[len(src_key) + 1 :] for name in self.list_files(src_key)]
        self.copy_files([(f"{src_key}/{name}", f"{dst_key}/{name}") for name in names])
        return names

    def get_prefix(self, src: str, local_dir: Path) -> list[Path]:
        """Download every file under `src` into `local_dir`, keeping relative paths; returns the local paths."""
        src_key = validate_key(src)
        names = [name[len(src_key) + 1 :] for name in self.list_files(src_key)]
        local_paths = [Path(local_dir) / name for name in names]
        for local in local_paths:
            local.parent.mkdir(parents=True, exist_ok=True)
        if names:
            with self._io("download", src_key):
                self._fs.get([f"{self._full(src_key)}/{name}" for name in names], [str(p) for p in local_paths])
        return local_paths

    def put_dir(self, local_dir: Path, prefix: str) -> list[str]:
        """Upload every file of `local_dir` under `prefix` in one batch; returns the keys written.

        Symlinks are refused: a scenario folder comes from untrusted code and a link could exfiltrate
        any readable file.
        """
        dst_key = validate_key(prefix)
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise ConfigError(f"cannot upload {local_dir}: not a folder")
        local_files: list[Path] = []
        for path in sorted(local_dir.rglob("*")):
            if path.is_symlink():
                raise ConfigError(f"refusing to upload the symlink {path}: scenario folders must hold plain files")
            if path.is_file():
                local_files.append(path)
        keys = [join_key(dst_key, path.relative_to(local_dir).as_posix()) for path in local_files]
        if local_files:
            with self._io("upload to", dst_key):
                self._fs.put([str(p) for p in local_files], [self._full(k) for k in keys])
        return keys


def _parse_s3_url(url: str) -> _S3Location:
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"invalid bucket {bucket!r} in store URL {url!r}: use 3-63 characters from a-z 0-9 . -, "
            "e.g. 's3://scenarios/datasets'"
        )
    return _S3Location(bucket=bucket, prefix=validate_key(prefix, allow_root=True))


# --- committed scenario folders -------------------------------------------------------------------


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

    Steps: clear stale uploads for this destination, upload to ``.tmp/<dest-hash>/<uuid>/``, delete the
    destination's marker then its files, copy server-side to `dest_prefix`, drop the upload, and write
    ``_COMMITTED`` last. The slow, failure-prone upload never touches the destination; a crash at any
    step leaves either no marker (invisible) or a complete folder, and re-running converges. The upload
    is dropped before the marker is written: a folder that is committed is never committed again, so an
    upload left behind by a crash after its marker would stay in ``.tmp/`` for good.
    Two commits racing to one destination are not supported.
    """
    dest = validate_key(dest_prefix)
    local_dir = Path(local_dir)
    if (local_dir / COMMIT_MARKER).exists():
        raise ConfigError(f"cannot commit {local_dir}: it contains a file named {COMMIT_MARKER!r}, which is reserved")
    tmp_root = _tmp_root_for(dest)
    store.delete_prefix(tmp_root)
    upload = f"{tmp_root}/{uuid.uuid4().hex}"
    uploaded = store.put_dir(local_dir, upload)
    if not uploaded:
        raise ConfigError(f"cannot commit {local_dir}: the folder holds no files")
    names = [key[len(upload) + 1 :] for key in uploaded]
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


def list_scenarios(store: DatasetStore, prefix: str) -> list[str]:
    """Sorted names of the committed folders directly under `prefix` (e.g. scenario ids under 'staging')."""
    base = validate_key(prefix)
    names = set()
    for key in store.list_files(base):
        parts = key[len(base) + 1 :].split("/")
        if len(parts) == 2 and parts[1] == COMMIT_MARKER:
            names.add(parts[0])
    return sorted(names)


__all__ = [
    "BENCHMARKS_PREFIX",
    "COMMIT_MARKER",
    "DatasetStore",
    "FAILURES_PREFIX",
    "ObjectNotFoundError",
    "RUNS_PREFIX",
    "STAGING_PREFIX",
    "StoreBackend",
    "TRACES_PREFIX",
    "benchmark_entries_prefix",
    "benchmark_entry_key",
    "benchmark_manifest_key",
    "benchmark_prefix",
    "commit_scenario",
    "copy_committed",
    "failure_prefix",
    "is_committed",
    "join_key",
    "list_scenarios",
    "make_scenario_id",
    "parse_scenario_id",
    "run_record_key",
    "staging_prefix",
    "uncommit",
    "validate_dest",
    "validate_key",
    "validate_name",
    "validate_run_id",
]
