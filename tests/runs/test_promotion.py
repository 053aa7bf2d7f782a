"""Promotion from staging into a benchmark: idempotence, crash convergence and concurrency on both backends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.runs.promotion import MANIFEST_FORMAT_VERSION, BenchmarkManifest, promote, read_manifest
from scenario_lib.store.commit import commit_scenario, is_committed, list_scenarios
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import (
    COMMIT_MARKER,
    benchmark_entry_key,
    benchmark_manifest_key,
    make_scenario_id,
)
from tests.store.test_store import InjectedCrash, crash_before_call, make_scenario_folder



def stage_run(
    store: DatasetStore, tmp_path: Path, run_id: str, seeds: range, *, fast: bool = False
) -> dict[str, dict[str, bytes]]:
    """Commit one small scenario folder per seed under staging/; returns the files of each scenario id."""
    staged: dict[str, dict[str, bytes]] = {}
    for seed in seeds:
        scenario_id = make_scenario_id(run_id, seed)
        folder = make_scenario_folder(tmp_path / "local" / scenario_id, tag=scenario_id)
        if fast:
            # The commit protocol is tested in test_store; here a plain upload + marker saves requests.
            store.put_dir(folder, f"staging/{scenario_id}")
            store.write_bytes(f"staging/{scenario_id}/{COMMIT_MARKER}", b"{}")
        else:
            commit_scenario(store, folder, f"staging/{scenario_id}")
        staged[scenario_id] = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return staged


def assert_promoted(store: DatasetStore, dest: str, staged: dict[str, dict[str, bytes]]) -> BenchmarkManifest:
    """Every staged scenario is committed in the benchmark with its files, listed once, and gone from staging."""
    manifest = read_manifest(store, dest)
    assert manifest is not None
    assert manifest.scenario_ids == sorted(staged)
    for scenario_id, files in staged.items():
        folder = f"benchmarks/{dest}/{scenario_id}"
        assert is_committed(store, folder)
        stored = {key.removeprefix(folder + "/"): store.read_bytes(key) for key in store.list_files(folder)}
        stored.pop(COMMIT_MARKER)
        assert stored == files
        assert store.exists(benchmark_entry_key(dest, scenario_id))
        assert store.list_files(f"staging/{scenario_id}") == []
    return manifest


def test_promote_a_run_then_again_is_a_no_op(dataset_store: DatasetStore, tmp_path: Path) -> None:
    staged = stage_run(dataset_store, tmp_path, "run-a", range(3))
    stage_run(dataset_store, tmp_path, "run-b", range(1))  # another run stays in staging

    result = promote(dataset_store, run_id="run-a", dest="v1")
    assert result.promoted == sorted(staged) and result.already_present == []
    assert result.entry_count == 3
    assert result.manifest_url == dataset_store.url_for("benchmarks/v1/manifest.json")
    manifest = assert_promoted(dataset_store, "v1", staged)
    assert manifest.entries[0].path == "benchmarks/v1/run-a_0"
    assert list_scenarios(dataset_store, "staging") == ["run-b_0"]
    assert list_scenarios(dataset_store, "benchmarks/v1") == sorted(staged)

    again = promote(dataset_store, run_id="run-a", dest="v1")
    assert again.promoted == [] and again.already_present == sorted(staged) and again.entry_count == 3
    by_id = promote(dataset_store, ["run-a_1"], dest="v1")
    assert by_id.promoted == [] and by_id.already_present == ["run-a_1"]
    assert read_manifest(dataset_store, "v1") == manifest  # not rewritten


def test_promote_selected_ids_into_two_destinations(dataset_store: DatasetStore, tmp_path: Path) -> None:
    stage_run(dataset_store, tmp_path, "r", range(3))
    assert promote(dataset_store, ["r_0", "r_2"], dest="easy").promoted == ["r_0", "r_2"]
    assert promote(dataset_store, ["r_1"], run_id="r", dest="hard").entry_count == 1
    assert list_scenarios(dataset_store, "staging") == []


def test_unknown_ids_list_what_exists(dataset_store: DatasetStore, tmp_path: Path) -> None:
    stage_run(dataset_store, tmp_path, "known", range(2))
    dataset_store.write_bytes("runs/recorded.json", b"{}")
    with pytest.raises(ConfigError, match=r"unknown run id 'ghost'.*runs in the store: known, recorded"):
        promote(dataset_store, run_id="ghost", dest="v1")
    with pytest.raises(ConfigError, match=r"unknown scenario id\(s\) known_9.*staged scenarios: known_0, known_1"):
        promote(dataset_store, ["known_0", "known_9"], dest="v1")
    with pytest.raises(ConfigError, match="does not belong to run"):
        promote(dataset_store, ["known_0"], run_id="other", dest="v1")
    with pytest.raises(ConfigError, match="scenario ids or a run id"):
        promote(dataset_store, dest="v1")
    assert list_scenarios(dataset_store, "staging") == ["known_0", "known_1"]  # nothing moved


@pytest.mark.parametrize("dest", ["../escape", "a/b", "..", "", "/abs"])
def test_traversal_in_dest_is_rejected(dataset_store: DatasetStore, tmp_path: Path, dest: str) -> None:
    stage_run(dataset_store, tmp_path, "r", range(1))
    with pytest.raises(ConfigError, match="invalid benchmark destination"):
        promote(dataset_store, run_id="r", dest=dest)
    assert dataset_store.list_files("benchmarks") == []


def test_a_crash_at_every_step_converges_on_rerun(
    dataset_store: DatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = stage_run(dataset_store, tmp_path, "probe", range(2))
    with monkeypatch.context() as counting:
        steps = crash_before_call(dataset_store, counting, step=-1)
        promote(dataset_store, run_id="probe", dest="probe")
    assert_promoted(dataset_store, "probe", probe)
    assert len(steps) >= 10  # copy, marker, entry per scenario; manifest; staging deletes

    for step, name in enumerate(steps):
        run_id, dest = f"crash{step}", f"bench{step}"
        staged = stage_run(dataset_store, tmp_path, run_id, range(2), fast=True)
        with monkeypatch.context() as patch:
            crash_before_call(dataset_store, patch, step)
            with pytest.raises(InjectedCrash):
                promote(dataset_store, run_id=run_id, dest=dest)
        # Safety after the crash: every entry points at a complete, committed folder.
        for key in dataset_store.list_files(f"benchmarks/{dest}/entries"):
            scenario_id = key.rsplit("/", 1)[-1].removesuffix(".json")
            assert is_committed(dataset_store, f"benchmarks/{dest}/{scenario_id}"), f"step {step} ({name})"
        result = promote(dataset_store, run_id=run_id, dest=dest)
        assert sorted(result.promoted + result.already_present) == sorted(staged)
        assert_promoted(dataset_store, dest, staged)


def test_a_half_copied_target_is_replaced(dataset_store: DatasetStore, tmp_path: Path) -> None:
    staged = stage_run(dataset_store, tmp_path, "r", range(1))
    dataset_store.write_bytes("benchmarks/v1/r_0/scene.xml", b"partial")
    dataset_store.write_bytes("benchmarks/v1/r_0/stale.stl", b"from an older attempt")
    assert list_scenarios(dataset_store, "benchmarks/v1") == []
    promote(dataset_store, run_id="r", dest="v1")
    assert_promoted(dataset_store, "v1", staged)


def promote_runs_concurrently(
    store: DatasetStore, run_ids: list[str], run: Callable[[str], object]
) -> float:
    """Start `run(run_id)` for every run at once (threads + barrier); returns the wall time in seconds."""
    barrier = threading.Barrier(len(run_ids))

    def start(run_id: str) -> object:
        barrier.wait()
        return run(run_id)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(run_ids)) as pool:
        for future in [pool.submit(start, run_id) for run_id in run_ids]:
            future.result()
    return time.perf_counter() - started


def test_eight_concurrent_promotions_keep_every_entry(dataset_store: DatasetStore, tmp_path: Path) -> None:
    run_ids = [f"run{i}" for i in range(8)]
    staged: dict[str, dict[str, bytes]] = {}
    for run_id in run_ids:
        staged.update(stage_run(dataset_store, tmp_path, run_id, range(5), fast=True))

    elapsed_s = promote_runs_concurrently(
        dataset_store, run_ids, lambda run_id: promote(dataset_store, run_id=run_id, dest="shared")
    )
    manifest = assert_promoted(dataset_store, "shared", staged)
    print(f"\n[{dataset_store.backend.value}] 8 concurrent promotions: kept {len(manifest.entries)}/40 in {elapsed_s:.2f} s")
    assert len(manifest.entries) == 40


def test_naive_read_modify_write_loses_entries(dataset_store: DatasetStore) -> None:
    """The failure the CAS prevents: without it, concurrent writers overwrite each other's entries."""
    key = "benchmarks/naive/manifest.json"

    def naive_add_five(run_id: str) -> None:
        for seed in range(5):
            try:
                entries = json.loads(dataset_store.read_bytes(key))
            except ObjectNotFoundError:
                entries = []
            time.sleep(0.002)  # stands in for the latency of building the new manifest
            dataset_store.write_bytes(key, json.dumps([*entries, f"{run_id}_{seed}"]).encode())

    promote_runs_concurrently(dataset_store, [f"run{i}" for i in range(8)], naive_add_five)
    kept = len(json.loads(dataset_store.read_bytes(key)))
    print(f"\n[{dataset_store.backend.value}] naive read-modify-write: kept {kept}/40")
    assert kept < 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", r"is not valid JSON.*move the broken file aside"),
        (b'{"dest": "v1"}', r"does not match the manifest format.*move the broken file aside"),
        (
            json.dumps({"format_version": MANIFEST_FORMAT_VERSION + 1, "dest": "v1", "entries": []}).encode(),
            r"format_version 2, newer than.*upgrade scenario_lib",
        ),
    ],
    ids=["corrupt-json", "wrong-shape", "future-version"],
)
def test_a_bad_manifest_is_reported_and_never_overwritten(
    dataset_store: DatasetStore, tmp_path: Path, content: bytes, message: str
) -> None:
    stage_run(dataset_store, tmp_path, "r", range(1))
    manifest_key = benchmark_manifest_key("v1")
    dataset_store.write_bytes(manifest_key, content)
    with pytest.raises(StoreError, match=message) as info:
        promote(dataset_store, run_id="r", dest="v1")
    assert dataset_store.url_for(manifest_key) in str(info.value)
    assert dataset_store.read_bytes(manifest_key) == content
    assert list_scenarios(dataset_store, "staging") == ["r_0"]  # nothing moved


def test_a_corrupt_entry_is_reported(dataset_store: DatasetStore, tmp_path: Path) -> None:
    stage_run(dataset_store, tmp_path, "r", range(2))
    promote(dataset_store, ["r_0"], dest="v1")
    dataset_store.write_bytes(benchmark_entry_key("v1", "r_9"), b"garbage")
    with pytest.raises(StoreError, match=r"benchmark entry .*r_9.json is corrupt.*delete it"):
        promote(dataset_store, ["r_1"], dest="v1")


def test_a_half_deleted_staging_source_is_cleaned_on_rerun(dataset_store: DatasetStore, tmp_path: Path) -> None:
    staged = stage_run(dataset_store, tmp_path, "r", range(1), fast=True)
    promote(dataset_store, run_id="r", dest="v1")
    # Recreate what a crash inside the staging delete leaves: marker gone, some files still there.
    dataset_store.write_bytes("staging/r_0/scene.xml", b"<mujoco/>")
    assert list_scenarios(dataset_store, "staging") == []
    result = promote(dataset_store, ["r_0"], dest="v1")
    assert result.already_present == ["r_0"] and result.entry_count == 1
    assert_promoted(dataset_store, "v1", staged)
