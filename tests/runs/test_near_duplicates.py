"""Near duplicates: the descriptor's invariances, refusal at promotion (CLI, flow), and the race between two.

Every scenario here is real: an offline-authored script validated in the real sandbox (one harness seed),
written as a scenario folder and committed to staging of a real store (a local folder, and moto's S3 where
the store's compare-and-swap matters). Near copies are real scripts too (`near_copy_source` of the
calibration bench): parameters moved by 1 % of their range, bodies renamed, the scene translated.
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scenario_lib.authoring.offline import author_script
from scenario_lib.errors import StoreError
from scenario_lib.report import ValidationReport
from scenario_lib.runs.descriptor import describe_scenario, normalize_parameters, scenario_distance
from scenario_lib.runs.duplicates import (
    NEAR_DUPLICATE_DISTANCE,
    DuplicateState,
    admit_scenarios,
    describe_folder,
    read_descriptor_index,
)
from scenario_lib.runs.promotion import PromotionResult, promote, read_manifest
from scenario_lib.runs.withdrawal import withdraw
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.store.commit import commit_scenario, list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import benchmark_descriptors_key, staging_prefix
from scenario_lib.tiers import TIER_PRESETS, Tier
from scenario_lib.validation.artifacts import MANIFEST_FILE, parse_scenario_manifest, write_scenario_folder
from scenario_lib.validation.pipeline import HarnessConfig, SeedValidation, Validator
from tests.flows.test_flows import prefect_api  # noqa: F401  (the Prefect server fixture)
from tests.store.test_store import InjectedCrash, crash_before_call
from tests.support import REPO



def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("near_duplicates_bench", REPO / "bench" / "near_duplicates_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = load_bench()


@dataclass(frozen=True)
class Validated:
    """A script validated by the real pipeline, ready to be written as a scenario folder under any id."""

    tier: Tier
    source: str
    report: ValidationReport
    result: SeedValidation


# label -> (tier, prompt, author seed, how the script is rewritten)
PUSH = (Tier.TEST_DUMMY, "push the box", 3)
STACK = (Tier.TIER1, "stack the blocks", 5)
LEVER = (Tier.TIER2, "tip the lever", 4)
COPIES: dict[str, Callable[[str], str]] = {
    "same": lambda source: source,
    "parameters-1pct": lambda source: BENCH.near_copy_source(source, offset_mm=None, prefix=None),
    "renamed-translated": lambda source: BENCH.near_copy_source(source, shift=0.0),
    "all-three": lambda source: BENCH.near_copy_source(source),
}
DISTINCT_PUSH_SEEDS = (0, 1, 2, 4)


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Validated]:
    """Originals, their copies (``push/all-three``, ...) and distinct push_box seeds (``push-seed0``, ...)."""
    plan: dict[str, tuple[Tier, str, int]] = {}
    for family, (tier, prompt, seed) in {"push": PUSH, "stack": STACK, "lever": LEVER}.items():
        source = author_script(tier, prompt, seed).source
        plan[family] = (tier, source, seed)
        for copy, rewrite in COPIES.items():
            plan[f"{family}/{copy}"] = (tier, rewrite(source), seed)
    for seed in DISTINCT_PUSH_SEEDS:
        plan[f"push-seed{seed}"] = (Tier.TEST_DUMMY, author_script(Tier.TEST_DUMMY, "push", seed).source, seed)
    out: dict[str, Validated] = {}
    with SandboxPool(workers=1) as pool:
        validator = Validator(pool, HarnessConfig(seeds=1, decomposition_cache_dir=tmp_path_factory.mktemp("coacd")))
        for label, (tier, source, seed) in plan.items():
            report, result = validator.validate_script(source, base_seed=seed)
            assert report.passed, (label, report.summary())
            out[label] = Validated(tier, source, report, result)
    return out


def write_folder(root: Path, item: Validated, scenario_id: str) -> Path:
    folder = root / "folders" / scenario_id
    write_scenario_folder(
        folder,
        scenario_id=scenario_id,
        tier=item.tier.value,
        prompt=TIER_PRESETS[item.tier].default_prompt,
        author="offline:test",
        source=item.source,
        report=item.report,
        result=item.result,
    )
    return folder


def stage(store: DatasetStore, root: Path, item: Validated, scenario_id: str) -> None:
    commit_scenario(store, write_folder(root, item, scenario_id), staging_prefix(scenario_id))


def folder_files(folder: Path) -> tuple[str, dict[str, bytes], Any]:
    manifest = parse_scenario_manifest((folder / MANIFEST_FILE).read_bytes(), url=str(folder))
    meshes = {f"meshes/{p.name}": p.read_bytes() for p in (folder / "meshes").glob("*.stl")}
    return (folder / "scene.xml").read_text(encoding="utf-8"), meshes, manifest


def describe_local(folder: Path, scene_xml: str | None = None) -> Any:
    scene, meshes, manifest = folder_files(folder)
    return describe_scenario(
        family=manifest.family,
        parameters=manifest.parameters,
        scale=manifest.scale,
        scene_xml=scene if scene_xml is None else scene_xml,
        meshes=meshes,
    )


# --- the descriptor, pure ------------------------------------------------------------------------------


def test_renaming_bodies_and_translating_the_scene_file_leave_the_descriptor_as_it_is(
    validated: dict[str, Validated], tmp_path: Path
) -> None:
    folder = write_folder(tmp_path, validated["stack"], "stack_5")
    scene, _, _ = folder_files(folder)
    original = describe_local(folder)
    # Rename every body (not its mesh files) and move every top-level body by the same offset.
    renamed = re.sub(r'<body name="(\w+)"', r'<body name="other_\1"', scene)

    def shifted(match: re.Match[str]) -> str:
        x, y, z = (float(value) for value in match.group(2).split())
        return f'{match.group(1)} pos="{x + 0.137} {y - 0.052} {z + 0.011}"'

    moved = re.sub(r'(<body name="\w+") pos="([^"]+)"', shifted, renamed)
    assert moved != scene and "other_" in moved
    assert scenario_distance(original, describe_local(folder, moved)) < 1e-5
    assert len(original.bodies) == scene.count("<body ")


def test_the_distance_is_zero_for_itself_symmetric_and_infinite_across_families(
    validated: dict[str, Validated], tmp_path: Path
) -> None:
    push = describe_local(write_folder(tmp_path, validated["push"], "push_3"))
    near = describe_local(write_folder(tmp_path, validated["push/all-three"], "near_3"))
    lever = describe_local(write_folder(tmp_path, validated["lever"], "lever_4"))
    assert scenario_distance(push, push) == 0.0
    assert scenario_distance(push, near) == scenario_distance(near, push) > 0.0
    assert scenario_distance(push, lever) == math.inf


def test_parameters_are_fractions_of_the_template_range_and_asinh_without_one() -> None:
    # push_box's size_mm is drawn from 20-40 mm: 30 mm is the middle; scale 2 is half the 0.5-2 width up.
    normalized = normalize_parameters("push_box", {"size_mm": 30.0, "unknown_mm": 30.0}, (1.0, 2.0, 0.5))
    assert normalized["size_mm"] == pytest.approx(0.5)
    assert normalized["unknown_mm"] == pytest.approx(math.asinh(30.0), abs=1e-6)
    assert normalized["scale_y"] == pytest.approx(0.5) and normalized["scale_z"] == pytest.approx(-0.5)


def test_a_broken_scene_is_reported_with_the_file(validated: dict[str, Validated], tmp_path: Path) -> None:
    folder = write_folder(tmp_path, validated["push"], "push_3")
    _, meshes, manifest = folder_files(folder)
    with pytest.raises(StoreError, match="scene.xml is not valid XML"):
        describe_scenario(family="push_box", parameters={}, scale=(1, 1, 1), scene_xml="<mujoco", meshes=meshes)
    scene, _, _ = folder_files(folder)
    with pytest.raises(StoreError, match=r"meshes/mover.stl, which the scenario folder does not hold"):
        describe_scenario(
            family="push_box",
            parameters=manifest.parameters,
            scale=manifest.scale,
            scene_xml=scene,
            meshes={k: v for k, v in meshes.items() if "mover" not in k},
        )


# --- refusal at promotion ------------------------------------------------------------------------------


def test_the_same_scenario_under_a_new_run_id_is_refused_with_both_ids(
    dataset_store: DatasetStore, validated: dict[str, Validated], tmp_path: Path
) -> None:
    stage(dataset_store, tmp_path, validated["push"], "first_3")
    assert promote(dataset_store, run_id="first", dest="v1").promoted == ["first_3"]
    stage(dataset_store, tmp_path, validated["push/same"], "second_3")

    result = promote(dataset_store, run_id="second", dest="v1")
    assert result.promoted == [] and result.entry_count == 1
    [refused] = result.refused
    expected = ("second_3", "first_3", DuplicateState.PROMOTED)
    assert (refused.scenario_id, refused.duplicate_of, refused.state) == expected
    assert refused.distance == 0.0
    assert "second_3" in refused.message and "first_3" in refused.message and "0.0000" in refused.message
    assert list_scenarios(dataset_store, "staging") == ["second_3"]  # left where it was
    assert list_scenarios(dataset_store, "benchmarks/v1") == ["first_3"]

    allowed = promote(dataset_store, run_id="second", dest="v1", allow_near_duplicates=True)
    assert allowed.promoted == ["second_3"] and allowed.refused == [] and allowed.entry_count == 2


@pytest.mark.parametrize("family", ["push", "stack", "lever"])
@pytest.mark.parametrize("copy", [name for name in COPIES if name != "same"])
def test_near_copies_are_refused(validated: dict[str, Validated], tmp_path: Path, family: str, copy: str) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated[family], "orig_1")
    promote(store, ["orig_1"], dest="v1")
    stage(store, tmp_path, validated[f"{family}/{copy}"], "copy_1")
    result = promote(store, ["copy_1"], dest="v1")
    assert [(item.duplicate_of, item.state) for item in result.refused] == [("orig_1", DuplicateState.PROMOTED)]
    assert result.refused[0].distance <= 0.6 * NEAR_DUPLICATE_DISTANCE  # with room to spare
    assert list_scenarios(store, "staging") == ["copy_1"]


def test_distinct_seeds_and_families_are_all_promoted(validated: dict[str, Validated], tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    labels = ["push", "stack", "lever", *(f"push-seed{seed}" for seed in DISTINCT_PUSH_SEEDS)]
    for index, label in enumerate(labels):
        stage(store, tmp_path, validated[label], f"many_{index}")
    result = promote(store, run_id="many", dest="v1")
    assert result.refused == [] and result.unchecked == [] and result.entry_count == len(labels)
    index, _ = read_descriptor_index(store, "v1")
    assert index is not None and sorted(index.descriptors) == sorted(result.promoted)


def test_a_near_copy_earlier_in_the_same_promotion_refuses_the_later(
    validated: dict[str, Validated], tmp_path: Path
) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated["stack"], "batch_1")
    stage(store, tmp_path, validated["stack/all-three"], "batch_2")
    stage(store, tmp_path, validated["push"], "batch_3")
    result = promote(store, run_id="batch", dest="v1")
    assert result.promoted == ["batch_1", "batch_3"]
    [refused] = result.refused
    assert (refused.scenario_id, refused.duplicate_of, refused.state) == (
        "batch_2",
        "batch_1",
        DuplicateState.SAME_PROMOTION,
    )
    assert "earlier in this promotion" in refused.message


def test_a_benchmark_promoted_before_the_index_is_described_from_its_folders(
    validated: dict[str, Validated], tmp_path: Path
) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated["lever"], "old_4")
    promote(store, ["old_4"], dest="v1")
    store.delete(benchmark_descriptors_key("v1"))  # as a benchmark from before near-duplicate checks
    stage(store, tmp_path, validated["lever/all-three"], "new_4")
    result = promote(store, ["new_4"], dest="v1")
    assert [item.duplicate_of for item in result.refused] == ["old_4"]
    index, _ = read_descriptor_index(store, "v1")
    assert index is not None and list(index.descriptors) == ["old_4"]  # rebuilt, with the old entry


def test_an_admission_in_flight_blocks_and_a_withdrawn_one_does_not(
    validated: dict[str, Validated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated["push"], "a_3")
    stage(store, tmp_path, validated["push/all-three"], "b_3")
    with monkeypatch.context() as patch:
        crash_before_call(store, patch, step=1)  # step 0 writes the index; crash before the copy
        with pytest.raises(InjectedCrash):
            promote(store, ["a_3"], dest="v1")
    blocked = promote(store, ["b_3"], dest="v1")
    assert [(item.duplicate_of, item.state) for item in blocked.refused] == [("a_3", DuplicateState.IN_FLIGHT)]
    assert "re-run promote" in blocked.refused[0].message

    assert promote(store, ["a_3"], dest="v1").promoted == ["a_3"]  # the re-run finishes the admitted one
    assert promote(store, ["b_3"], dest="v1").refused[0].state == DuplicateState.PROMOTED
    withdraw(store, ["a_3"], dest="v1", reason="replaced by a corrected version")
    assert promote(store, ["b_3"], dest="v1").promoted == ["b_3"]


def test_a_corrupt_index_is_reported_and_nothing_moves(validated: dict[str, Validated], tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated["push"], "a_3")
    store.write_bytes(benchmark_descriptors_key("v1"), b'{"dest": 3}')
    with pytest.raises(StoreError, match=r"near-duplicate index .*descriptors.json is corrupt.*delete it and re-run"):
        promote(store, ["a_3"], dest="v1")
    assert list_scenarios(store, "staging") == ["a_3"]


def test_a_folder_without_a_descriptor_is_promoted_unchecked(validated: dict[str, Validated], tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    folder = write_folder(tmp_path, validated["push"], "bare_3")
    (folder / "scene.xml").unlink()
    commit_scenario(store, folder, staging_prefix("bare_3"))
    assert describe_folder(store, staging_prefix("bare_3")) is None
    result = promote(store, ["bare_3"], dest="v1")
    assert result.promoted == ["bare_3"] and result.unchecked == ["bare_3"]


# --- the race --------------------------------------------------------------------------------------------


def race(
    store_factory: Callable[[], DatasetStore], jobs: dict[str, list[str]], dest: str
) -> dict[str, PromotionResult]:
    """Promote each job's ids at the same moment, each with its own store client (as separate processes)."""
    barrier = threading.Barrier(len(jobs))

    def run(ids: list[str]) -> PromotionResult:
        store = store_factory()
        barrier.wait()
        return promote(store, ids, dest=dest)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(run, ids) for name, ids in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def store_factory(dataset_store: DatasetStore) -> Iterator[Callable[[], DatasetStore]]:
    def reopen() -> DatasetStore:
        if dataset_store.endpoint_url is None:
            return DatasetStore.from_url(dataset_store.url)
        from tests.s3_server import ACCESS_KEY, SECRET_KEY

        return DatasetStore.from_url(
            dataset_store.url, endpoint_url=dataset_store.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY
        )

    yield reopen


def test_two_racing_near_duplicates_exactly_one_lands(
    dataset_store: DatasetStore,
    store_factory: Callable[[], DatasetStore],
    validated: dict[str, Validated],
    tmp_path: Path,
) -> None:
    rounds = 3
    for round_index in range(rounds):
        dest = f"race{round_index}"
        left, right = f"left{round_index}_3", f"right{round_index}_3"
        stage(dataset_store, tmp_path, validated["push"], left)
        stage(dataset_store, tmp_path, validated["push/all-three"], right)
        # A distinct scenario rides along with each, and must land whatever happens to the duplicate.
        stage(dataset_store, tmp_path, validated["push-seed0"], f"left{round_index}_0")
        stage(dataset_store, tmp_path, validated["push-seed1"], f"right{round_index}_1")
        results = race(
            store_factory,
            {"left": [left, f"left{round_index}_0"], "right": [right, f"right{round_index}_1"]},
            dest,
        )
        landed = sorted(sid for result in results.values() for sid in result.promoted)
        refused = [item for result in results.values() for item in result.refused]
        assert len(refused) == 1, (round_index, results)
        [loser] = refused
        winner = right if loser.scenario_id == left else left
        assert loser.duplicate_of == winner and loser.state in (DuplicateState.PROMOTED, DuplicateState.IN_FLIGHT)
        assert landed == sorted([winner, f"left{round_index}_0", f"right{round_index}_1"])
        manifest = read_manifest(dataset_store, dest)
        assert manifest is not None and manifest.scenario_ids == landed
        assert loser.scenario_id in list_scenarios(dataset_store, "staging")


def test_admission_alone_lets_exactly_one_of_eight_identical_candidates_in(
    dataset_store: DatasetStore,
    store_factory: Callable[[], DatasetStore],
    validated: dict[str, Validated],
    tmp_path: Path,
) -> None:
    folder = write_folder(tmp_path, validated["push"], "probe_3")
    descriptor = describe_local(folder)
    for index in range(8):  # staged: an admitted scenario without a staging folder or an entry blocks nothing
        commit_scenario(dataset_store, folder, staging_prefix(f"c{index}_3"))
    barrier = threading.Barrier(8)

    def admit(index: int) -> tuple[str, ...]:
        store = store_factory()
        barrier.wait()
        return admit_scenarios(store, "crowd", {f"c{index}_3": descriptor}).admitted

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = [sid for ids in pool.map(admit, range(8)) for sid in ids]
    assert len(admitted) == 1
    index, _ = read_descriptor_index(dataset_store, "crowd")
    assert index is not None and list(index.descriptors) == admitted


# --- the command and the flow ------------------------------------------------------------------------------


def test_the_promote_command_exits_1_naming_both_ids_unless_allowed(
    validated: dict[str, Validated], tmp_path: Path
) -> None:
    from tests.cli.test_cli import cli_env, invoke

    env = cli_env(tmp_path)
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    stage(store, tmp_path, validated["push"], "first_3")
    assert invoke(["promote", "first", "--dest", "v1"], env).exit_code == 0
    stage(store, tmp_path, validated["push/same"], "second_3")

    refused = invoke(["promote", "second", "--dest", "v1"], env)
    assert refused.exit_code == 1, refused.output
    assert "second_3 is a near duplicate of first_3" in refused.stdout and "distance 0.0000" in refused.stdout
    as_json = invoke(["promote", "second_3", "--dest", "v1", "--json"], env)
    assert as_json.exit_code == 1 and '"duplicate_of": "first_3"' in as_json.stdout
    assert list_scenarios(store, "staging") == ["second_3"]

    allowed = invoke(["promote", "second", "--dest", "v1", "--allow-near-duplicates"], env)
    assert allowed.exit_code == 0, allowed.output
    assert list_scenarios(store, "benchmarks/v1") == ["first_3", "second_3"]


def test_the_promote_flow_fails_with_a_message_naming_the_ids_and_the_distance(
    prefect_api: None, validated: dict[str, Validated], tmp_path: Path
) -> None:
    from flows.promote import promote as promote_flow

    url = f"file://{tmp_path / 'store'}"
    store = DatasetStore.from_url(url)
    stage(store, tmp_path, validated["stack"], "first_5")
    stage(store, tmp_path, validated["stack/all-three"], "second_5")
    state = promote_flow(dest="v1", scenario_ids=["first_5", "second_5"], store_url=url, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "second_5 is a near duplicate of first_5" in message and re.search(r"distance 0\.0\d{3}", message), message
    assert list_scenarios(store, "benchmarks/v1") == ["first_5"] and list_scenarios(store, "staging") == ["second_5"]

    allowed = promote_flow(dest="v1", scenario_ids=["second_5"], store_url=url, allow_near_duplicates=True)
    assert allowed.promoted == ["second_5"]
