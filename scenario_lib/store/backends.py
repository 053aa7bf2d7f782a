"""Where the store's bytes live: a local folder or an S3 bucket, behind one interface.

`DatasetStore` validates keys, translates errors and implements everything else once; a backend does
only what differs between the two: atomic writes, create-if-absent, compare-and-swap, listing and
server-side copies. Keys reach a backend as full paths (root included) in its fsspec filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.asyn import sync
from fsspec.spec import AbstractFileSystem

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store.layout import TMP_PREFIX, validate_key

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Error codes by which S3 servers refuse a conditional write; AWS answers 409 when two conditional
# writes to one key race, 412 when the condition is false.
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# botocore's "standard" retry mode retries throttling, 5xx and connection errors with jittered
# exponential backoff; three attempts keep an unreachable endpoint failing within a few seconds.
S3_MAX_ATTEMPTS = 3
_S3_CONNECT_TIMEOUT_S = 5.0
_S3_READ_TIMEOUT_S = 30.0
_S3_COPY_CONCURRENCY = 16


class StoreBackend(str, Enum):
    """Where the store keeps its bytes."""

    LOCAL = "file"
    S3 = "s3"


def redact_url(url: str) -> str:
    """`url` without any user:password part, fit for error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Backend(ABC):
    """The operations that differ between a local folder and an S3 bucket."""

    kind: StoreBackend
    url_scheme: str
    # Errors of the transport that mean "the store failed", beyond OSError.
    transport_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, fs: AbstractFileSystem, root: str, *, url: str, endpoint_url: str | None = None) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.endpoint_url = endpoint_url

    def full(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    @property
    def local_root(self) -> Path | None:
        return None

    @abstractmethod
    def read(self, full: str) -> bytes: ...

    @abstractmethod
    def read_with_etag(self, full: str) -> tuple[bytes, str]: ...

    @abstractmethod
    def write(self, full: str, data: bytes) -> None:
        """Write atomically: readers see the old or the new content, never a mix."""

    @abstractmethod
    def create(self, full: str, data: bytes) -> bool:
        """Write only if absent; False when the name is taken."""

    @abstractmethod
    def replace_if_match(self, full: str, data: bytes, etag: str) -> bool:
        """Overwrite only if the version tag is still ``etag``; False when it changed or vanished."""

    def find(self, full: str) -> list[dict[str, Any]]:
        """Every file entry (fsspec detail dicts) below the folder ``full``."""
        found = self.fs.find(full, withdirs=False, detail=True)
        return list(found.values()) if isinstance(found, dict) else []

    def entries(self, full: str) -> list[dict[str, Any]]:
        """The entries (fsspec detail dicts, files and folders) directly in the folder ``full``; none if absent."""
        try:
            return list(self.fs.ls(full, detail=True))
        except FileNotFoundError:
            return []

    def find_named(self, full: str, name_prefix: str) -> list[dict[str, Any]]:
        """Every file entry below the entries of the folder ``full`` whose names start with ``name_prefix``."""
        found: list[dict[str, Any]] = []
        for entry in self.entries(full):
            if not entry["name"].rstrip("/").rsplit("/", 1)[-1].startswith(name_prefix):
                continue
            found += self.find(entry["name"].rstrip("/")) if entry.get("type") == "directory" else [entry]
        return found

    @abstractmethod
    def copy(self, sources: list[str], targets: list[str]) -> None: ...

    def remove_folder(self, full: str) -> None:
        """Called after every file under ``full`` was deleted."""


class LocalBackend(Backend):
    """A folder on a local disk: temp file + ``os.replace`` for atomic writes, ``fcntl`` locks for CAS."""

    kind = StoreBackend.LOCAL
    url_scheme = "file"

    @classmethod
    def open(cls, url: str) -> LocalBackend:
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
        return cls(fsspec.filesystem("file", auto_mkdir=True), str(root), url=f"file://{root}")

    @property
    def local_root(self) -> Path | None:
        return Path(self.root)

    def _tmp_path(self) -> str:
        # Same filesystem as the target, so os.replace / os.link are atomic.
        return os.path.join(self.root, TMP_PREFIX, f"{uuid.uuid4().hex}.partial")

    @contextlib.contextmanager
    def _tmp_file(self, data: bytes) -> Iterator[str]:
        tmp = self._tmp_path()
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @contextlib.contextmanager
    def _dir_lock(self, full: str) -> Iterator[None]:
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

    def read(self, full: str) -> bytes:
        return bytes(self.fs.cat_file(full))

    def read_with_etag(self, full: str) -> tuple[bytes, str]:
        with open(full, "rb") as handle:
            data = handle.read()
        return data, hashlib.sha256(data).hexdigest()

    def write(self, full: str, data: bytes) -> None:
        with self._tmp_file(data) as tmp, self._dir_lock(full):
            os.replace(tmp, full)

    def create(self, full: str, data: bytes) -> bool:
        # fsspec's local mode="create" is not atomic: write a temp file and hard-link it in, which
        # fails with EEXIST if the name is taken and never exposes a partial file.
        with self._tmp_file(data) as tmp:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            try:
                os.link(tmp, full)
            except FileExistsError:
                return False
            return True

    def replace_if_match(self, full: str, data: bytes, etag: str) -> bool:
        with self._tmp_file(data) as tmp, self._dir_lock(full):
            try:
                with open(full, "rb") as handle:
                    current = hashlib.sha256(handle.read()).hexdigest()
            except FileNotFoundError:
                return False
            if current != etag:
                return False
            os.replace(tmp, full)
            return True

    def copy(self, sources: list[str], targets: list[str]) -> None:
        self.fs.copy(sources, targets)

    def remove_folder(self, full: str) -> None:
        # Remove the emptied folders too, so a deleted scenario leaves no trace locally.
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(full, recursive=True)


class S3Backend(Backend):
    """An S3 bucket/prefix (MinIO, SeaweedFS, AWS): single PUTs are atomic, conditional PUTs do the rest."""

    kind = StoreBackend.S3
    url_scheme = "s3"

    def __init__(self, fs: AbstractFileSystem, root: str, *, url: str, endpoint_url: str | None = None) -> None:
        super().__init__(fs, root, url=url, endpoint_url=endpoint_url)
        from botocore.exceptions import BotoCoreError, ClientError

        self.transport_errors = (OSError, BotoCoreError, ClientError)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        max_attempts: int,
    ) -> S3Backend:
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        bucket, prefix = parse_s3_url(url)
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
        return cls(fs, f"{bucket}/{prefix}" if prefix else bucket, url=url, endpoint_url=endpoint_url)

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]

    def head_bucket(self) -> None:
        self.fs.call_s3("head_bucket", Bucket=self.bucket)

    def create_bucket(self) -> None:
        self.fs.call_s3("create_bucket", Bucket=self.bucket)

    def read(self, full: str) -> bytes:
        return self.read_with_etag(full)[0]  # s3fs cat_file adds a HEAD first

    def read_with_etag(self, full: str) -> tuple[bytes, str]:
        # One GET gives body and ETag of the same version; a HEAD then GET could pair a new body with
        # an old tag and let a stale compare-and-swap through.
        bucket, object_key, _ = self.fs.split_path(full)
        response: dict[str, Any] = self.fs.call_s3("get_object", Bucket=bucket, Key=object_key)

        async def read_body() -> bytes:
            async with response["Body"] as body:
                return bytes(await body.read())

        return sync(self.fs.loop, read_body), str(response["ETag"])

    def write(self, full: str, data: bytes) -> None:
        self.fs.pipe_file(full, data)  # a single PUT is atomic on S3

    def create(self, full: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(full, data, mode="create")  # sends If-None-Match: *
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if _precondition_failed(err):
                return False
            raise

    def replace_if_match(self, full: str, data: bytes, etag: str) -> bool:
        try:
            self.fs.pipe_file(full, data, IfMatch=etag)  # single PUT with If-Match
            return True
        except FileNotFoundError:
            return False
        except OSError as err:
            if _precondition_failed(err):
                return False
            raise

    def find(self, full: str) -> list[dict[str, Any]]:
        if full == self.root:
            return super().find(full)
        # List the parent with a "<name>/" prefix: s3fs answers an empty plain find() with extra
        # HEAD + LIST requests to check whether the path is a file, which doubles listing cost.
        parent, _, name = full.rpartition("/")
        return self.find_named(parent, f"{name}/")

    def find_named(self, full: str, name_prefix: str) -> list[dict[str, Any]]:
        # One listing of the keys that start with "<folder>/<name_prefix>", however many others the folder holds.
        found = self.fs.find(full, withdirs=False, detail=True, prefix=name_prefix)
        return list(found.values()) if isinstance(found, dict) else []

    def copy(self, sources: list[str], targets: list[str]) -> None:
        sync(self.fs.loop, self._copy_objects, list(zip(sources, targets)))

    async def _copy_objects(self, pairs: Sequence[tuple[str, str]]) -> None:
        # One CopyObject per file, concurrently. s3fs's copy() first HEADs every source to pick a copy
        # method by size; scenario files are far below CopyObject's 5 GiB limit, so that HEAD is skipped
        # and only a refused copy falls back to s3fs's size-aware path.
        limit = asyncio.Semaphore(_S3_COPY_CONCURRENCY)

        async def copy_one(source: str, target: str) -> None:
            src_bucket, src_key, _ = self.fs.split_path(source)
            dst_bucket, dst_key, _ = self.fs.split_path(target)
            async with limit:
                try:
                    await self.fs._call_s3(
                        "copy_object",
                        Bucket=dst_bucket,
                        Key=dst_key,
                        CopySource={"Bucket": src_bucket, "Key": src_key},
                    )
                except OSError as err:
                    if isinstance(err, FileNotFoundError | PermissionError):
                        raise
                    await self.fs._cp_file(source, target)

        await asyncio.gather(*(copy_one(source, target) for source, target in pairs))


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of an ``s3://bucket/prefix`` URL; ConfigError for a malformed bucket."""
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"invalid bucket {bucket!r} in store URL {url!r}: use 3-63 characters from a-z 0-9 . -, "
            "e.g. 's3://scenarios/datasets'"
        )
    return bucket, validate_key(prefix, allow_root=True)


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


__all__ = ["Backend", "LocalBackend", "S3Backend", "StoreBackend", "parse_s3_url", "redact_url"]
