"""The dataset store: one code path for a local folder and an S3 bucket (MinIO, SeaweedFS, AWS).

`DatasetStore` turns relative keys (see `scenario_lib.store.layout`) into operations on a backend
(`scenario_lib.store.backends`) and every low-level error into an actionable `StoreError`. What is
stored where is `scenario_lib.store.layout`; how a scenario folder appears complete or not at all is
`scenario_lib.store.commit`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store.backends import S3_MAX_ATTEMPTS, Backend, LocalBackend, S3Backend, StoreBackend, redact_url
from scenario_lib.store.layout import join_key, validate_key

if TYPE_CHECKING:
    from scenario_lib.config import StoreSettings


class ObjectNotFoundError(StoreError, FileNotFoundError):
    """The key does not exist in the store (also a FileNotFoundError)."""


class DatasetStore:
    """Keys under a root in one fsspec filesystem: a local folder or an S3 bucket/prefix.

    Keys are relative, '/'-separated (see `validate_key`). Every method works the same on both
    backends; only atomic writes and compare-and-swap differ underneath (temp file + ``os.replace``
    and ``fcntl`` locks locally, conditional PUTs on S3). The instance is safe to share between threads.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._fs = backend.fs

    @property
    def backend(self) -> StoreBackend:
        return self._backend.kind

    @property
    def url(self) -> str:
        return self._backend.url

    @property
    def endpoint_url(self) -> str | None:
        return self._backend.endpoint_url

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
        max_attempts: int = S3_MAX_ATTEMPTS,
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
            backend = S3Backend.open(
                url, endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key, max_attempts=max_attempts
            )
            store = cls(backend)
            store._ensure_bucket(backend, create=create_bucket)
            return store
        if scheme not in ("", "file"):
            raise ConfigError(f"unsupported store URL {redact_url(url)!r}: use 'file://...', a plain path or 's3://...'")
        return cls(LocalBackend.open(url))

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, url: str | None = None, create_bucket: bool = True) -> DatasetStore:
        """The store ``settings`` point at; ``url`` opens another store with the same endpoint and keys."""
        return cls.from_url(
            url or settings.url,
            endpoint_url=settings.endpoint_url,
            access_key=settings.access_key.get_secret_value() if settings.access_key else None,
            secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
            create_bucket=create_bucket,
        )

    def _ensure_bucket(self, backend: S3Backend, *, create: bool) -> None:
        bucket = backend.bucket
        try:
            backend.head_bucket()
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
        except backend.transport_errors as err:
            from botocore.exceptions import NoCredentialsError, PartialCredentialsError

            if isinstance(err, NoCredentialsError | PartialCredentialsError):
                raise StoreError(
                    f"no usable S3 credentials for store {self.describe()} ({err}); set the access key and secret "
                    "key (SCENARIOS_STORE__ACCESS_KEY / SCENARIOS_STORE__SECRET_KEY)"
                ) from err
            raise StoreError(
                f"cannot reach the dataset store {self.describe()}: {type(err).__name__}: {err}; "
                "check that the server is running and the endpoint URL, bucket and credentials are right"
            ) from err
        try:
            backend.create_bucket()
        except backend.transport_errors as err:
            if isinstance(err, FileExistsError) or "BucketAlreadyOwnedByYou" in repr(err.__cause__ or err):
                return  # created concurrently by another process
            raise StoreError(
                f"bucket {bucket!r} of store {self.describe()} is missing and could not be created ({err}); "
                "create it yourself or grant s3:CreateBucket"
            ) from err

    # naming

    def describe(self) -> str:
        """The store URL plus its endpoint, without credentials, for messages."""
        if self.endpoint_url:
            return f"{self.url} (endpoint {redact_url(self.endpoint_url)})"
        return self.url

    def __repr__(self) -> str:
        return f"DatasetStore({self.describe()!r})"

    @property
    def local_root(self) -> Path | None:
        """The root folder of a local store; None for S3."""
        return self._backend.local_root

    def url_for(self, path: str) -> str:
        """A human-readable URL of `path` (``file:///...`` or ``s3://bucket/...``)."""
        full = self._full(validate_key(path, allow_root=True))
        return f"{self._backend.url_scheme}://{full}"

    def _full(self, key: str) -> str:
        return self._backend.full(key)

    def _relative(self, full: str) -> str:
        full = full.rstrip("/")
        root = self._backend.root + "/"
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
        except self._backend.transport_errors as err:
            raise StoreError(
                f"failed to {action} {self.url_for(key)} in store {self.describe()}: {type(err).__name__}: {err}; "
                "check that the store is reachable and writable, then retry"
            ) from err

    # bytes

    def read_bytes(self, path: str) -> bytes:
        """The content of `path`; ObjectNotFoundError if absent."""
        key = validate_key(path)
        with self._io("read", key):
            return self._backend.read(self._full(key))

    def read_bytes_if_exists(self, path: str) -> bytes | None:
        """The content of `path`, or None if absent."""
        try:
            return self.read_bytes(path)
        except ObjectNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write `data` to `path` atomically (readers see the old or the new content, never a mix)."""
        key = validate_key(path)
        with self._io("write", key):
            self._backend.write(self._full(key), data)

    def create_bytes(self, path: str, data: bytes) -> bool:
        """Write `data` to `path` only if absent; True if written, False if `path` already existed."""
        key = validate_key(path)
        with self._io("create", key):
            return self._backend.create(self._full(key), data)

    def read_with_etag(self, path: str) -> tuple[bytes, str]:
        """The content of `path` and an opaque version tag for `replace_if_match`; ObjectNotFoundError if absent."""
        key = validate_key(path)
        with self._io("read", key):
            return self._backend.read_with_etag(self._full(key))

    def replace_if_match(self, path: str, data: bytes, etag: str) -> bool:
        """Overwrite `path` with `data` only if its version tag is still `etag` (compare-and-swap).

        Returns False when `path` changed or vanished since `read_with_etag`; the caller re-reads and retries.
        """
        key = validate_key(path)
        with self._io("replace", key):
            return self._backend.replace_if_match(self._full(key), data, etag)

    # files and prefixes

    def exists(self, path: str) -> bool:
        """Whether a file (not a folder) exists at `path`."""
        key = validate_key(path)
        with self._io("check", key):
            return bool(self._fs.isfile(self._full(key)))

    def list_files(self, prefix: str = "", recursive: bool = True, *, named: str = "") -> list[str]:
        """Sorted keys of the files under the folder `prefix` ('' for the whole store).

        Only files count: empty "directories" some servers keep after deletes are skipped. `prefix`
        is a folder, not a string prefix: 'staging/run-1_1' does not list 'staging/run-1_10/...'.
        ``named`` keeps (recursively) only the entries of `prefix` whose names start with it, listing
        only those: ``list_files("staging", named="run-1_")`` costs what that run holds, not the folder.
        """
        key = validate_key(prefix, allow_root=True)
        full = self._full(key)
        with self._io("list", key):
            if named:
                entries = self._backend.find_named(full, named)
            elif recursive:
                entries = self._backend.find(full)
            else:
                entries = self._backend.entries(full)
        folder = full + "/"
        names = [
            self._relative(entry["name"])
            for entry in entries
            if entry.get("type") == "file" and entry["name"].startswith(folder) and not entry["name"].endswith("/")
        ]
        return sorted(names)

    def list_folders(self, prefix: str = "") -> list[str]:
        """Sorted names of the folders directly under the folder `prefix` (one listing, not recursive)."""
        key = validate_key(prefix, allow_root=True)
        full = self._full(key)
        with self._io("list", key):
            entries = self._backend.entries(full)
        folder = full + "/"
        names = [
            entry["name"].rstrip("/")[len(folder) :]
            for entry in entries
            if entry.get("type") == "directory" and entry["name"].startswith(folder)
        ]
        return sorted(name for name in names if name and "/" not in name)

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
            self._backend.remove_folder(self._full(key))
        return len(files)

    def copy_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Copy each ``(src, dst)`` key pair inside the store (server-side on S3), in one batch."""
        if not pairs:
            return
        sources = [self._full(validate_key(src)) for src, _ in pairs]
        targets = [self._full(validate_key(dst)) for _, dst in pairs]
        with self._io("copy", pairs[0][0]):
            self._backend.copy(sources, targets)

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


__all__ = ["DatasetStore", "ObjectNotFoundError", "StoreBackend"]
