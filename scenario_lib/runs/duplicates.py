"""Near duplicates: the benchmark's descriptor index, and the admission that keeps near copies out of it.

``benchmarks/<dest>/descriptors.json`` (`DescriptorIndex`) maps every scenario *admitted* to the benchmark to
its descriptor (`scenario_lib.runs.descriptor`; ``null`` when its folder has none to give). `admit_scenarios`
decides, for a promotion's candidates, which may go in:

1. read the index with its version tag; describe the benchmark's entries the index does not hold yet
   (promoted before the index existed) from their folders;
2. walk the candidates in id order: one whose distance to an admitted scenario, or to a candidate admitted
   just before it in this call, is at most the threshold is *refused*; the others are admitted;
3. write the index with the admitted candidates added, by compare-and-swap (create-if-absent for the first);
   on a lost race re-read and decide again from step 1.

Every admission goes through one compare-and-swap on one object, so admissions are serialized: of two
near duplicates promoted at the same time, the one whose write lands first is admitted, and the other's
write fails, re-reads the index, finds the first and is refused. An admitted scenario that has no entry yet
is *in flight* (being copied, or its promotion crashed and is waiting for a re-run): it still blocks its
near copies, and the message says how to finish it. One with neither an entry nor a committed staging
folder is gone (withdrawn, or abandoned) and blocks nothing. A candidate already in the index with the same
descriptor is a re-run after a crash and is admitted again without a check.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scenario_lib.errors import StoreError
from scenario_lib.runs.descriptor import ScenarioDescriptor, describe_scenario, scenario_distance
from scenario_lib.store.commit import is_committed
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import (
    benchmark_descriptors_key,
    benchmark_entries_prefix,
    benchmark_entry_key,
    benchmark_prefix,
    join_key,
    staging_prefix,
)

# Calibrated with bench/near_duplicates_bench.py (bench/results/near_duplicates.json, 500 offline-authored
# seeds per tier, one harness seed): the nearest distinct seed is at least 0.0962 away in tier1 (p1 0.101),
# 0.1136 in tier2 (p1 0.114) and 0.0268 in test_dummy (one pair; p1 0.058), while near copies (parameters
# moved by 1 % of their range, bodies renamed, the scene translated) are at most 0.0069 from their
# original. 0.014 sits about 2x from both: 1.9x below the closest distinct pair, 2.0x above the farthest copy.
NEAR_DUPLICATE_DISTANCE = 0.014
DESCRIPTOR_INDEX_FORMAT_VERSION = 1


class DuplicateState(str, Enum):
    """Where the scenario a refused candidate duplicates is."""

    PROMOTED = "promoted"  # in the benchmark (it has an entry)
    SAME_PROMOTION = "same_promotion"  # admitted earlier in the same promotion
    IN_FLIGHT = "in_flight"  # admitted by another promotion that has not created its entry yet


class NearDuplicate(BaseModel):
    """A candidate refused as a near duplicate: the scenario it duplicates and how far apart they are."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    duplicate_of: str
    distance: float
    threshold: float
    state: DuplicateState

    @property
    def message(self) -> str:
        where = {
            DuplicateState.PROMOTED: "already in the benchmark",
            DuplicateState.SAME_PROMOTION: "promoted earlier in this promotion",
            DuplicateState.IN_FLIGHT: (
                "being promoted by another promotion (if that one crashed, re-run promote for it to finish it)"
            ),
        }[self.state]
        return (
            f"{self.scenario_id} is a near duplicate of {self.duplicate_of} ({where}): distance "
            f"{self.distance:.4f} <= {self.threshold}; it stays in staging (promote with allow_near_duplicates / "
            "--allow-near-duplicates to add it anyway)"
        )


class DescriptorIndex(BaseModel):
    """``benchmarks/<dest>/descriptors.json``: the descriptor of every scenario admitted to the benchmark."""

    model_config = ConfigDict(frozen=True)

    format_version: int = DESCRIPTOR_INDEX_FORMAT_VERSION
    dest: str
    descriptors: dict[str, ScenarioDescriptor | None] = Field(default_factory=dict)


@dataclass(frozen=True)
class Admission:
    """What `admit_scenarios` decided: ids admitted (in order) and the refused near duplicates."""

    admitted: tuple[str, ...]
    refused: tuple[NearDuplicate, ...]


def describe_folder(store: DatasetStore, folder: str) -> ScenarioDescriptor | None:
    """The descriptor of the stored scenario folder `folder`, or None when it holds no readable scenario
    manifest, scene or visual meshes. Store failures (unreachable, denied) raise `StoreError`."""
    from scenario_lib.validation.artifacts import MANIFEST_FILE, parse_scenario_manifest
    from scenario_lib.validation.pipeline import MESH_DIR, SCENE_FILE

    manifest_key = join_key(folder, MANIFEST_FILE)
    try:
        manifest_bytes = store.read_bytes(manifest_key)
    except ObjectNotFoundError:
        return None
    # Only what the files hold is judged here: a folder that cannot be described is not compared. Reads
    # stay outside the `except StoreError`, so a store that cannot be reached raises.
    try:
        manifest = parse_scenario_manifest(manifest_bytes, url=store.url_for(manifest_key))
    except StoreError:
        return None
    try:
        scene_xml = store.read_bytes(join_key(folder, SCENE_FILE))
    except ObjectNotFoundError:
        return None
    meshes = {
        key[len(folder) + 1 :]: store.read_bytes(key)
        for key in store.list_files(join_key(folder, MESH_DIR))
        if key.endswith(".stl") and "_hull" not in key.rsplit("/", 1)[-1]
    }
    try:
        return describe_scenario(
            family=manifest.family,
            parameters=manifest.parameters,
            scale=manifest.scale,
            scene_xml=scene_xml.decode("utf-8", errors="replace"),
            meshes=meshes,
        )
    except StoreError:
        return None


def read_descriptor_index(store: DatasetStore, dest: str) -> tuple[DescriptorIndex | None, str]:
    """The index of `dest` and its version tag, or ``(None, "")``; StoreError naming the fix if corrupt."""
    key = benchmark_descriptors_key(dest)
    try:
        data, etag = store.read_with_etag(key)
    except ObjectNotFoundError:
        return None, ""
    try:
        index = DescriptorIndex.model_validate_json(data)
    except ValidationError as err:
        raise StoreError(
            f"near-duplicate index {store.url_for(key)} is corrupt ({err.errors()[0]['msg']}); delete it and re-run "
            "promote: it is rebuilt from the benchmark's scenario folders"
        ) from err
    if index.format_version > DESCRIPTOR_INDEX_FORMAT_VERSION:
        raise StoreError(
            f"near-duplicate index {store.url_for(key)} has format_version {index.format_version}, newer than this "
            f"scenario_lib understands ({DESCRIPTOR_INDEX_FORMAT_VERSION}); upgrade scenario_lib"
        )
    return index, etag


def _state_of(store: DatasetStore, dest: str, scenario_id: str, entry_ids: set[str]) -> DuplicateState | None:
    """PROMOTED or IN_FLIGHT for an admitted scenario, or None when it is gone (withdrawn or abandoned)."""
    if scenario_id in entry_ids:
        return DuplicateState.PROMOTED
    # Staging before the entry: a promoter deletes staging only after creating the entry, so a scenario
    # whose staging is gone and that still has no entry afterwards will never get one.
    if is_committed(store, staging_prefix(scenario_id)):
        return DuplicateState.IN_FLIGHT
    if store.exists(benchmark_entry_key(dest, scenario_id)):
        return DuplicateState.PROMOTED
    return None


def _nearest_blocking(
    store: DatasetStore,
    dest: str,
    candidate: ScenarioDescriptor,
    admitted: Mapping[str, ScenarioDescriptor | None],
    batch: set[str],
    entry_ids: set[str],
    threshold: float,
    exclude: str,
) -> tuple[str, float, DuplicateState] | None:
    """The nearest admitted scenario within `threshold` that still counts (not gone), if any."""
    near = []
    for other_id, other in admitted.items():
        if other is None or other_id == exclude:
            continue
        distance = scenario_distance(candidate, other, limit=threshold)
        if distance <= threshold:
            near.append((distance, other_id))
    for distance, other_id in sorted(near):
        state = DuplicateState.SAME_PROMOTION if other_id in batch else _state_of(store, dest, other_id, entry_ids)
        if state is not None:
            return other_id, distance, state
    return None


def admit_scenarios(
    store: DatasetStore,
    dest: str,
    candidates: Mapping[str, ScenarioDescriptor | None],
    *,
    allow_near_duplicates: bool = False,
    threshold: float = NEAR_DUPLICATE_DISTANCE,
    max_attempts: int = 50,
) -> Admission:
    """Admit `candidates` (``{scenario_id: descriptor}``) to the index of `dest`, refusing near duplicates of
    admitted scenarios and of each other (see the module docstring). With `allow_near_duplicates` every
    candidate is admitted (and later ones are compared with it). A candidate without a descriptor is admitted
    unchecked. StoreError if the index stays contended for `max_attempts` rounds or is corrupt."""
    key = benchmark_descriptors_key(dest)
    legacy: dict[str, ScenarioDescriptor | None] = {}  # entries described from their folders, kept across rounds
    for attempt in range(max_attempts):
        index, etag = read_descriptor_index(store, dest)
        current = dict(index.descriptors) if index is not None else {}
        entry_ids = {
            entry.rsplit("/", 1)[-1].removesuffix(".json")
            for entry in store.list_files(benchmark_entries_prefix(dest))
            if entry.endswith(".json")
        }
        for scenario_id in sorted(entry_ids - set(current) - set(legacy)):
            legacy[scenario_id] = describe_folder(store, benchmark_prefix(dest, scenario_id))
        additions = {sid: legacy[sid] for sid in entry_ids if sid not in current}
        admitted: list[str] = []
        refused: list[NearDuplicate] = []
        for scenario_id in sorted(candidates):
            descriptor = candidates[scenario_id]
            if scenario_id in current and current[scenario_id] == descriptor:
                admitted.append(scenario_id)  # admitted before a crash: the re-run goes on
                continue
            if descriptor is not None and not allow_near_duplicates:
                blocking = _nearest_blocking(
                    store, dest, descriptor, {**current, **additions}, set(admitted), entry_ids, threshold, scenario_id
                )
                if blocking is not None:
                    other_id, distance, state = blocking
                    refused.append(
                        NearDuplicate(
                            scenario_id=scenario_id,
                            duplicate_of=other_id,
                            distance=round(distance, 6),
                            threshold=threshold,
                            state=state,
                        )
                    )
                    continue
            additions[scenario_id] = descriptor
            admitted.append(scenario_id)
        if not additions:
            return Admission(tuple(admitted), tuple(refused))
        updated = DescriptorIndex(dest=dest, descriptors=dict(sorted({**current, **additions}.items())))
        payload = updated.model_dump_json().encode()
        written = store.create_bytes(key, payload) if index is None else store.replace_if_match(key, payload, etag)
        if written:
            return Admission(tuple(admitted), tuple(refused))
        # Another promotion admitted scenarios in between: decide again against what it admitted.
        time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * random.uniform(0.5, 1.5))
    raise StoreError(
        f"could not update {store.url_for(key)} after {max_attempts} compare-and-swap attempts (too many concurrent "
        "promotions); re-run promote: nothing was promoted by this call that is not admitted"
    )


__all__ = [
    "Admission",
    "DESCRIPTOR_INDEX_FORMAT_VERSION",
    "DescriptorIndex",
    "DuplicateState",
    "NEAR_DUPLICATE_DISTANCE",
    "NearDuplicate",
    "admit_scenarios",
    "describe_folder",
    "read_descriptor_index",
]
