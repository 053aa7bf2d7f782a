"""Promotion: move validated scenarios from ``staging/`` into a named benchmark, crash-safely and concurrently.

Object stores have no atomic move, so a promotion is a sequence of idempotent steps per scenario:

0. admit the candidates to ``benchmarks/<dest>/descriptors.json``, the near-duplicate index, by one
   compare-and-swap for the whole call (`scenario_lib.runs.duplicates.admit_scenarios`): a candidate within
   `NEAR_DUPLICATE_DISTANCE` of a scenario admitted before (in the benchmark, in flight in another
   promotion, or earlier in this one) is refused: it writes nothing, stays in staging and is listed in
   `PromotionResult.refused` with the id it duplicates and the distance (unless ``allow_near_duplicates``).
   Admissions are serialized by that compare-and-swap, so of two near duplicates promoted at once exactly
   one is admitted; a crash after it leaves an admission that the re-run recognizes (same descriptor);
1. copy ``staging/<id>/`` to ``benchmarks/<dest>/<id>/`` and commit it there (marker last);
2. create ``benchmarks/<dest>/entries/<id>.json``: the commit point; once it exists the scenario is promoted;
3. rebuild ``benchmarks/<dest>/manifest.json`` from all entries with compare-and-swap and retry,
   then the derived files (``index.parquet``, ``README.md``, ``croissant.json``: `scenario_lib.runs.publication`)
   from that manifest;
4. delete the staging source (marker first).

A crash after any step leaves a state from which re-running `promote` converges: before step 2 the
copy is redone; after it the scenario reports as already present and the remaining steps are finished.
One object per entry plus a CAS-rebuilt manifest means concurrent promotions never lose an entry.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scenario_lib.errors import ConfigError, StoreError, name_list
from scenario_lib.runs.duplicates import NearDuplicate, admit_scenarios, describe_folder
from scenario_lib.store.commit import copy_committed, list_scenarios, uncommit
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.records import parse_record
from scenario_lib.store.layout import (
    BENCHMARKS_PREFIX,
    RUNS_PREFIX,
    STAGING_PREFIX,
    benchmark_entries_prefix,
    benchmark_entry_key,
    benchmark_manifest_key,
    benchmark_prefix,
    parse_scenario_id,
    staging_prefix,
    validate_dest,
    validate_key,
    validate_run_id,
)

MANIFEST_FORMAT_VERSION = 1


class ManifestEntry(BaseModel):
    """One promoted scenario, stored as ``benchmarks/<dest>/entries/<id>.json`` and repeated in the manifest."""

    model_config = ConfigDict(frozen=True)

    format_version: int = MANIFEST_FORMAT_VERSION
    scenario_id: str
    run_id: str
    seed: int
    path: str = Field(description="Key of the scenario folder, relative to the store root.")
    files: list[str] = Field(default_factory=list, description="File names inside the folder.")
    promoted_at: datetime

    # A stored entry is read back by other tools: ids and keys that could point outside the store are refused.
    @field_validator("scenario_id")
    @classmethod
    def _check_scenario_id(cls, value: str) -> str:
        parse_scenario_id(value)
        return value

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str) -> str:
        return validate_run_id(value)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return validate_key(value)

    @field_validator("files")
    @classmethod
    def _check_files(cls, value: list[str]) -> list[str]:
        for name in value:
            validate_key(name)
        return value


class BenchmarkManifest(BaseModel):
    """The index of one benchmark destination: every entry, sorted by scenario id."""

    model_config = ConfigDict(frozen=True)

    format_version: int = MANIFEST_FORMAT_VERSION
    dest: str
    updated_at: datetime
    entries: list[ManifestEntry] = Field(default_factory=list)

    @field_validator("dest")
    @classmethod
    def _check_dest(cls, value: str) -> str:
        return validate_dest(value)

    @property
    def scenario_ids(self) -> list[str]:
        return [entry.scenario_id for entry in self.entries]


class PromotionResult(BaseModel):
    """What `promote` did: ids newly promoted, ids that were already there, and the manifest it left."""

    model_config = ConfigDict(frozen=True)

    dest: str
    promoted: list[str]
    already_present: list[str]
    manifest_url: str
    entry_count: int
    refused: list[NearDuplicate] = Field(
        default_factory=list, description="Near duplicates left in staging, with the id each duplicates."
    )
    unchecked: list[str] = Field(
        default_factory=list,
        description="Promoted without a near-duplicate check: no readable scenario manifest, scene or meshes.",
    )


def _check_format_version(raw: object, what: str, url: str) -> None:
    version = raw.get("format_version", MANIFEST_FORMAT_VERSION) if isinstance(raw, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_FORMAT_VERSION:
        raise StoreError(
            f"{what} {url} has format_version {version}, newer than this scenario_lib understands "
            f"({MANIFEST_FORMAT_VERSION}); upgrade scenario_lib before touching this benchmark"
        )


def parse_manifest(data: bytes, *, url: str) -> BenchmarkManifest:
    """Parse manifest bytes read from `url`; StoreError if corrupt or from a newer format version."""
    return parse_record(
        BenchmarkManifest,
        data,
        url=url,
        what="benchmark manifest",
        format_name="manifest",
        fix="it is rebuilt from the entries/ folder next to it: move the broken file aside (do not edit entries/) "
        "and re-run promote",
        format_version=MANIFEST_FORMAT_VERSION,
    )


def parse_entry(data: bytes, *, url: str) -> ManifestEntry:
    """Parse an entry file read from `url`; StoreError if corrupt or from a newer format version."""
    try:
        raw = json.loads(data)
        _check_format_version(raw, "benchmark entry", url)
        return ManifestEntry.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError, RecursionError) as err:
        raise StoreError(
            f"benchmark entry {url} is corrupt ({str(err)[:300]}); delete it and re-promote that scenario from staging "
            "(or restore it from backup) - the manifest is rebuilt from these entries"
        ) from err


def read_manifest(store: DatasetStore, dest: str) -> BenchmarkManifest | None:
    """The manifest of `dest`, or None if the benchmark has none yet."""
    key = benchmark_manifest_key(dest)
    data = store.read_bytes_if_exists(key)
    return None if data is None else parse_manifest(data, url=store.url_for(key))


def list_benchmarks(store: DatasetStore) -> list[str]:
    """The destinations of ``store`` that have a benchmark manifest, sorted."""
    names = []
    for key in store.list_files(BENCHMARKS_PREFIX):
        parts = key.split("/")
        if len(parts) == 3 and key == benchmark_manifest_key(parts[1]):
            names.append(parts[1])
    return sorted(names)


def require_manifest(store: DatasetStore, dest: str) -> tuple[BenchmarkManifest, bytes]:
    """The manifest of the existing benchmark ``dest`` and its bytes (what identifies its contents);
    ConfigError naming the benchmarks there when ``dest`` has none."""
    key = benchmark_manifest_key(dest)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        raise ConfigError(
            f"unknown benchmark {dest!r} in {store.describe()}: benchmarks there: {name_list(list_benchmarks(store))} "
            "(promote scenarios into one with `scenarios promote RUN_ID --dest NAME`)"
        ) from None
    return parse_manifest(data, url=store.url_for(key)), data


def _entry_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def rebuild_manifest(
    store: DatasetStore, dest: str, *, known_entries: Sequence[ManifestEntry] = (), max_attempts: int = 50
) -> BenchmarkManifest:
    """Make ``manifest.json`` of `dest` list exactly the entry files, with compare-and-swap; returns it.

    The manifest is read (with its version tag) *before* the entries are listed: any entry created
    before a writer's read is in its listing, and any manifest written after its read makes its
    compare-and-swap fail, so the last successful writer always includes every finished promotion.
    Entries are immutable, so those already in the manifest or in `known_entries` (just written by the
    caller) are not re-read.
    """
    key = benchmark_manifest_key(dest)
    url = store.url_for(key)
    # Entries are immutable: read each at most once across attempts.
    parsed: dict[str, ManifestEntry] = {entry.scenario_id: entry for entry in known_entries}
    for attempt in range(max_attempts):
        try:
            data, etag = store.read_with_etag(key)
            current: BenchmarkManifest | None = parse_manifest(data, url=url)
        except ObjectNotFoundError:
            current, etag = None, ""
        if current is not None:
            parsed.update((entry.scenario_id, entry) for entry in current.entries)
        entries: list[ManifestEntry] = []
        for entry_key in store.list_files(benchmark_entries_prefix(dest)):
            if not entry_key.endswith(".json"):
                continue
            scenario_id = _entry_id(entry_key)
            if scenario_id not in parsed:
                parsed[scenario_id] = parse_entry(store.read_bytes(entry_key), url=store.url_for(entry_key))
            entries.append(parsed[scenario_id])
        entries.sort(key=lambda item: item.scenario_id)
        if current is not None and current.entries == entries:
            return current
        manifest = BenchmarkManifest(dest=dest, updated_at=datetime.now(timezone.utc), entries=entries)
        payload = manifest.model_dump_json(indent=1).encode()
        written = store.create_bytes(key, payload) if current is None else store.replace_if_match(key, payload, etag)
        if written:
            return manifest
        # Lost the race: another promoter wrote in between. Back off with jitter so 8+ writers spread out.
        time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * random.uniform(0.5, 1.5))
    raise StoreError(
        f"could not update {url} after {max_attempts} compare-and-swap attempts (too many concurrent writers); "
        "re-run promote: the entries are saved and the manifest is rebuilt from them"
    )


def _read_unlisted_entries(store: DatasetStore, dest: str, manifest: BenchmarkManifest | None) -> list[ManifestEntry]:
    """Parse the entry files the manifest does not list yet (`StoreError` if one is corrupt)."""
    listed = set(manifest.scenario_ids) if manifest is not None else set()
    entries = []
    for entry_key in store.list_files(benchmark_entries_prefix(dest)):
        if entry_key.endswith(".json") and _entry_id(entry_key) not in listed:
            entries.append(parse_entry(store.read_bytes(entry_key), url=store.url_for(entry_key)))
    return entries




def _known_run_ids(store: DatasetStore, staged: Sequence[str]) -> list[str]:
    runs = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in store.list_files(RUNS_PREFIX, recursive=False)}
    runs.update(parse_scenario_id(scenario_id)[0] for scenario_id in staged)
    return sorted(runs)


def _resolve_ids(
    store: DatasetStore, scenario_ids: Sequence[str] | None, run_id: str | None, dest: str
) -> tuple[list[str], list[str]]:
    """Split the requested ids into (to promote, already promoted); ConfigError for unknown ids."""
    if scenario_ids is None and run_id is None:
        raise ConfigError("promote needs scenario ids or a run id: pass scenario_ids=[...] or run_id='...'")
    if run_id is not None:
        validate_run_id(run_id)
    staged = set(list_scenarios(store, STAGING_PREFIX))
    promoted = {_entry_id(key) for key in store.list_files(benchmark_entries_prefix(dest)) if key.endswith(".json")}

    if scenario_ids is None:
        assert run_id is not None
        candidates = sorted(sid for sid in staged | promoted if parse_scenario_id(sid)[0] == run_id)
        if not candidates:
            raise ConfigError(
                f"unknown run id {run_id!r}: it has no staged scenario and none promoted to {dest!r}; "
                f"runs in the store: {name_list(_known_run_ids(store, sorted(staged)))}"
            )
    else:
        if isinstance(scenario_ids, str):
            raise ConfigError(f"scenario_ids must be a list of ids, not the string {scenario_ids!r}")
        candidates = sorted(set(scenario_ids))
        for scenario_id in candidates:
            sid_run, _ = parse_scenario_id(scenario_id)
            if run_id is not None and sid_run != run_id:
                raise ConfigError(f"scenario {scenario_id!r} does not belong to run {run_id!r}")
        unknown = [sid for sid in candidates if sid not in staged and sid not in promoted]
        if unknown:
            raise ConfigError(
                f"unknown scenario id(s) {name_list(unknown)}: not committed under {STAGING_PREFIX}/ nor promoted to "
                f"{dest!r}; staged scenarios: {name_list(sorted(staged))}"
            )
    to_promote = [sid for sid in candidates if sid not in promoted]
    already = [sid for sid in candidates if sid in promoted]
    return to_promote, already


def promote(
    store: DatasetStore,
    scenario_ids: Sequence[str] | None = None,
    *,
    run_id: str | None = None,
    dest: str,
    allow_near_duplicates: bool = False,
) -> PromotionResult:
    """Promote staged scenarios (given ids, or every scenario of `run_id`) into the benchmark `dest`.

    Idempotent and crash-safe (see the module docstring): scenarios already promoted are reported in
    `already_present` and their leftover steps (manifest, staging cleanup) are finished. Safe to run
    concurrently with other promotions into the same `dest` for different scenarios (two promotions of
    the same scenario at the same time are not supported). A near duplicate of a scenario in the benchmark
    or earlier in this promotion stays in staging and is listed in `refused` (not an error), unless
    `allow_near_duplicates`.
    Raises ConfigError for an invalid `dest` or unknown ids, StoreError for store failures or a
    corrupt / newer-format manifest.
    """
    validate_dest(dest)
    to_promote, already = _resolve_ids(store, scenario_ids, run_id, dest)
    manifest_key = benchmark_manifest_key(dest)
    # Refuse a corrupt or newer manifest, or entry, before copying anything rather than after.
    known = _read_unlisted_entries(store, dest, read_manifest(store, dest))

    # Step 0: admission to the near-duplicate index; a refused candidate has written nothing.
    descriptors = {scenario_id: describe_folder(store, staging_prefix(scenario_id)) for scenario_id in to_promote}
    refused: list[NearDuplicate] = []
    if to_promote:
        admission = admit_scenarios(store, dest, descriptors, allow_near_duplicates=allow_near_duplicates)
        to_promote, refused = list(admission.admitted), list(admission.refused)

    promoted: list[str] = []
    written: list[ManifestEntry] = []
    for scenario_id in to_promote:
        run, seed = parse_scenario_id(scenario_id)
        target = benchmark_prefix(dest, scenario_id)
        files = copy_committed(store, staging_prefix(scenario_id), target)
        entry = ManifestEntry(
            scenario_id=scenario_id,
            run_id=run,
            seed=seed,
            path=target,
            files=sorted(files),
            promoted_at=datetime.now(timezone.utc),
        )
        if store.create_bytes(benchmark_entry_key(dest, scenario_id), entry.model_dump_json(indent=1).encode()):
            promoted.append(scenario_id)
            written.append(entry)
        else:
            # The entry appeared after `_resolve_ids` looked: a promoter that crashed after creating it is
            # being re-run elsewhere. The entry is the commit point, so this scenario counts as present.
            already.append(scenario_id)

    manifest = rebuild_manifest(store, dest, known_entries=[*known, *written])
    # Step 3b: the derived files (index, card, Croissant) follow the manifest; see scenario_lib.runs.publication.
    from scenario_lib.runs.publication import rebuild_benchmark_files

    rebuild_benchmark_files(store, dest, manifest=manifest)
    for scenario_id in sorted([*promoted, *already]):
        uncommit(store, staging_prefix(scenario_id))
    return PromotionResult(
        dest=dest,
        promoted=sorted(promoted),
        already_present=sorted(already),
        manifest_url=store.url_for(manifest_key),
        entry_count=len(manifest.entries),
        refused=refused,
        unchecked=sorted(scenario_id for scenario_id in to_promote if descriptors[scenario_id] is None),
    )


__all__ = [
    "MANIFEST_FORMAT_VERSION",
    "BenchmarkManifest",
    "ManifestEntry",
    "PromotionResult",
    "parse_entry",
    "parse_manifest",
    "promote",
    "read_manifest",
    "list_benchmarks",
    "rebuild_manifest",
    "require_manifest",
]
