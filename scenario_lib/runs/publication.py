"""Publishing a benchmark: its derived files rebuilt from what is committed, and immutable releases.

**Derived files** (``index.parquet``, ``splits/*.parquet``, ``README.md``, ``croissant.json`` in
``benchmarks/<dest>/``; `scenario_lib.runs.benchmark_card` builds them) follow the manifest the way the
manifest follows the entries: `rebuild_benchmark_files` builds them from a manifest and the committed
folders it lists, and is called by every promotion after its manifest rebuild (and by `scenarios card`).

Why concurrent writers lose no entry: a writer builds the files from manifest *M*, writes each one (an
atomic replace, skipped when the bytes are already there), then reads the manifest again, and if it is
no longer *M* rebuilds from the new one and writes again. Take the last write of a derived file, built
from *M*: its writer read *M* back *after* writing, so any later manifest change comes from a writer whose
own manifest write, hence its derived-file write, comes later still — contradicting "last". So once the
promotions end, each file was last built from the final manifest, which lists every committed entry
(`rebuild_manifest`). Every writer rebuilds from the full manifest, never from a delta, so which one
wins does not matter, and identical inputs give identical bytes.

Why a crash loses nothing: the files are never a commit point. A crash before or between their writes
leaves them built from an older manifest, i.e. stale: listing fewer scenarios, never one whose folder is
not committed (a manifest only lists entries, and an entry is created after its folder is committed).
The next promotion or `scenarios card` rebuilds them.

**Releases**: `release_benchmark` freezes a version in ``benchmarks/<dest>/releases/<version>/``: the
manifest's bytes as they are, and the derived files built from them with the release's ``version`` and
``citeAs``. The folder is committed like a scenario folder (``_COMMITTED`` written last, with
create-if-absent): a version that has its marker is refused, and nothing else ever writes into it, so
later promotions cannot change it. A crash before the marker leaves an uncommitted folder that the next
``release`` of that version clears and redoes. Releasing one version twice at the same time is not
supported (as with promoting one scenario twice at once).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.report import SeedReport
from scenario_lib.runs.benchmark_card import build_documents
from scenario_lib.runs.benchmark_index import CardSettings, HarnessBuild, Release, ScenarioRecord
from scenario_lib.runs.croissant import cite_as
from scenario_lib.runs.promotion import BenchmarkManifest, ManifestEntry, read_manifest, require_manifest
from scenario_lib.runs.withdrawal import read_withdrawals
from scenario_lib.store.commit import is_committed, uncommit
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import (
    CARD_SETTINGS_FILE,
    COMMIT_MARKER,
    benchmark_file_key,
    benchmark_manifest_key,
    benchmark_release_prefix,
    benchmark_releases_prefix,
    join_key,
    validate_dest,
)
from scenario_lib.validation.artifacts import MANIFEST_FILE, parse_scenario_manifest, read_scenario_report
from scenario_lib.validation.certificate import CERTIFICATE_FILE, ScenarioCertificate

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class PublishedFiles(BaseModel):
    """What `rebuild_benchmark_files` left: the URL of each derived file, which it (re)wrote, and the entries listed."""

    model_config = ConfigDict(frozen=True)

    dest: str
    files: dict[str, str]
    written: list[str]
    entry_count: int


class ReleaseResult(BaseModel):
    """A frozen release: its version, folder URL, the files in it (name -> SHA-256) and the entries it lists."""

    model_config = ConfigDict(frozen=True)

    dest: str
    version: str
    url: str
    files: dict[str, str]
    entry_count: int
    manifest_sha256: str


def read_card_settings(store: DatasetStore, dest: str) -> CardSettings:
    """The card settings of `dest` (``card.json``), or the defaults when none were set."""
    key = benchmark_file_key(dest, CARD_SETTINGS_FILE)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        return CardSettings()
    try:
        return CardSettings.model_validate_json(data)
    except ValidationError as err:
        raise StoreError(
            f"card settings {store.url_for(key)} are corrupt ({err.errors()[0]['msg']}); set them again with "
            f"`scenarios card {dest} --license ... --train-fraction ...`"
        ) from err


def write_card_settings(store: DatasetStore, dest: str, settings: CardSettings) -> None:
    """Store the card settings of `dest`; every later rebuild (promotions included) uses them."""
    store.write_bytes(benchmark_file_key(dest, CARD_SETTINGS_FILE), settings.model_dump_json(indent=1).encode())


def _harness_from_report(seeds: Sequence[SeedReport]) -> tuple[HarnessBuild, ...]:
    return tuple(
        HarnessBuild(
            seed=seed.seed,
            scale=seed.scale,
            passed=seed.passed,
            verdicts={result.stage.value: result.verdict.value for result in seed.stages},
        )
        for seed in seeds
    )


def read_scenario_record(store: DatasetStore, entry: ManifestEntry) -> ScenarioRecord | None:
    """What the folder of `entry` says, or None when the folder is not committed (withdrawn meanwhile).

    A folder whose manifest, certificate or report cannot be read gives a record with ``problem`` set,
    not an error: the files then say what is wrong instead of a promotion failing after its commit point.
    """
    folder = entry.path
    key = join_key(folder, MANIFEST_FILE)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        if not is_committed(store, folder):
            return None
        return ScenarioRecord(entry=entry, manifest=None, problem=f"no {MANIFEST_FILE} in the folder")
    digest = hashlib.sha256(data).hexdigest()
    try:
        manifest = parse_scenario_manifest(data, url=store.url_for(key))
    except StoreError as err:
        return ScenarioRecord(entry=entry, manifest=None, manifest_sha256=digest, problem=str(err)[:300])
    certificate = None
    problem = ""
    if CERTIFICATE_FILE in entry.files:
        certificate_key = join_key(folder, CERTIFICATE_FILE)
        try:
            certificate = ScenarioCertificate.model_validate_json(store.read_bytes(certificate_key))
        except (ObjectNotFoundError, ValidationError) as err:
            problem = f"{CERTIFICATE_FILE} unreadable: {str(err)[:200]}"
    if certificate is not None:
        harness = tuple(
            HarnessBuild(
                seed=seed.seed,
                scale=seed.scale,
                passed=seed.passed,
                verdicts={stage.stage.value: stage.verdict.value for stage in seed.stages},
            )
            for seed in certificate.seeds
        )
    else:
        try:
            harness = _harness_from_report(read_scenario_report(store, folder).seeds)
        except StoreError as err:
            harness, problem = (), problem or str(err)[:300]
    return ScenarioRecord(
        entry=entry, manifest=manifest, manifest_sha256=digest, certificate=certificate, harness=harness, problem=problem
    )


def _records(
    store: DatasetStore, manifest: BenchmarkManifest, cache: dict[str, ScenarioRecord | None]
) -> list[ScenarioRecord]:
    # A listed folder does not change while it is listed (entries are immutable), so records are read once.
    records = []
    for entry in manifest.entries:
        if entry.scenario_id not in cache:
            cache[entry.scenario_id] = read_scenario_record(store, entry)
        record = cache[entry.scenario_id]
        if record is not None:
            records.append(record)
    return records


def rebuild_benchmark_files(
    store: DatasetStore, dest: str, *, manifest: BenchmarkManifest | None = None, max_attempts: int = 50
) -> PublishedFiles:
    """Rebuild the derived files of `dest` from its manifest (`manifest`, or the stored one) until the
    manifest stays the same across a rebuild (module docstring). ConfigError when `dest` has no manifest."""
    validate_dest(dest)
    current = manifest if manifest is not None else read_manifest(store, dest)
    if current is None:
        raise ConfigError(
            f"unknown benchmark {dest!r}: {store.url_for(benchmark_manifest_key(dest))} does not exist; promote "
            f"scenarios into it first (`scenarios promote RUN_ID --dest {dest}`)"
        )
    cache: dict[str, ScenarioRecord | None] = {}
    written: list[str] = []
    for _ in range(max_attempts):
        settings = read_card_settings(store, dest)
        documents = build_documents(dest, current, _records(store, current, cache), read_withdrawals(store, dest), settings)
        for name, data in documents.items():
            key = benchmark_file_key(dest, name)
            try:
                unchanged = store.read_bytes(key) == data
            except ObjectNotFoundError:
                unchanged = False
            if not unchanged:
                store.write_bytes(key, data)
                written.append(name)
        latest = read_manifest(store, dest)
        if latest is None or latest == current:
            return PublishedFiles(
                dest=dest,
                files={name: store.url_for(benchmark_file_key(dest, name)) for name in documents},
                written=sorted(set(written)),
                entry_count=len(current.entries),
            )
        current = latest  # the manifest moved while writing: build again from the newer one
    raise StoreError(
        f"the manifest of benchmark {dest!r} kept changing over {max_attempts} rebuilds of its card (too many "
        f"concurrent promotions); run `scenarios card {dest}` once they are done"
    )


def list_releases(store: DatasetStore, dest: str) -> list[str]:
    """The committed release versions of `dest`, sorted by version number."""
    prefix = benchmark_releases_prefix(dest)
    versions = []
    for key in store.list_files(prefix):
        parts = key[len(prefix) + 1 :].split("/")
        if len(parts) == 2 and parts[1] == COMMIT_MARKER:
            versions.append(parts[0])
    return sorted(versions, key=lambda version: tuple(int(part) for part in version.split(".")) if _SEMVER.match(version) else ())


def release_benchmark(store: DatasetStore, dest: str, version: str) -> ReleaseResult:
    """Freeze the benchmark `dest` as it is committed now as version `version` (MAJOR.MINOR.PATCH).

    ConfigError for a malformed version, a version already released, or an unknown or empty benchmark;
    StoreError when a listed scenario is withdrawn while releasing (re-run it).
    """
    validate_dest(dest)
    if not isinstance(version, str) or not _SEMVER.match(version):
        raise ConfigError(f"invalid release version {version!r}: use MAJOR.MINOR.PATCH, e.g. 1.0.0 (semantic versioning)")
    prefix = benchmark_release_prefix(dest, version)
    released = list_releases(store, dest)
    if version in released:
        raise ConfigError(
            f"version {version} of benchmark {dest!r} is already released at {store.url_for(prefix)} and a release "
            f"never changes; release a new version instead (released: {', '.join(released)})"
        )
    manifest, manifest_bytes = require_manifest(store, dest)
    if not manifest.entries:
        raise ConfigError(f"benchmark {dest!r} lists no scenario: promote some before releasing it")
    cache: dict[str, ScenarioRecord | None] = {}
    records = _records(store, manifest, cache)
    missing = [sid for sid, record in cache.items() if record is None]
    if missing:
        raise StoreError(
            f"scenario(s) {', '.join(missing)} of benchmark {dest!r} were withdrawn while releasing {version}; "
            "release again: the new manifest no longer lists them"
        )
    release = Release(version=version, cite_as=cite_as(dest, version, manifest.updated_at.year))
    documents = build_documents(
        dest,
        manifest,
        records,
        read_withdrawals(store, dest),
        read_card_settings(store, dest),
        release=release,
        scenario_root="../../",  # the scenario folders lie next to releases/, two levels up
    )
    files = {MANIFEST_FILE: manifest_bytes, **documents}
    uncommit(store, prefix)  # what a crashed release of this version left (no marker: never visible)
    for name, data in files.items():
        store.write_bytes(join_key(prefix, name), data)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    marker = json.dumps({"version": version, "files": sorted(files), "sha256": hashes}, indent=1).encode()
    if not store.create_bytes(join_key(prefix, COMMIT_MARKER), marker):
        raise ConfigError(
            f"version {version} of benchmark {dest!r} was released by another process meanwhile ({store.url_for(prefix)}); "
            "release a new version instead"
        )
    return ReleaseResult(
        dest=dest,
        version=version,
        url=store.url_for(prefix),
        files=hashes,
        entry_count=len(manifest.entries),
        manifest_sha256=hashes[MANIFEST_FILE],
    )


__all__ = [
    "PublishedFiles",
    "ReleaseResult",
    "list_releases",
    "read_card_settings",
    "read_scenario_record",
    "rebuild_benchmark_files",
    "release_benchmark",
    "write_card_settings",
]
