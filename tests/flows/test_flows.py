"""The flows against a real Prefect server (`prefect_test_harness`), with the offline author and test_dummy tier.

One module-scoped harness; two generate runs at once on a local-folder store feed most tests (the
4-slot global limit is shared by them); S3 runs on the moto server from tests/s3_server.py.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.states import State
from prefect.testing.utilities import prefect_test_harness

from scenario_lib.runs.generation import read_run_record
from scenario_lib.runs.promotion import read_manifest
from scenario_lib.store.commit import is_committed, list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import staging_prefix
from tests.prefect_stack import max_overlap
from tests.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3Server, closed_port

SERVER_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Freed slots of a global limit are re-polled after at most this long (default 30 s).
    "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
}
LIMIT = "scenario-generation"
RUNS = ("pair-0", "pair-1")
PER_RUN = 4


def create_limit(slots: int = 4) -> None:
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=LIMIT, limit=slots))


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A Prefect server subprocess with a temporary database, and the 4-slot generation limit."""
    saved = {name: os.environ.get(name) for name in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            create_limit()
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Worker-like settings for the flows: a local store, 2 harness seeds, the offline author; yields the folder."""
    root = tmp_path_factory.mktemp("flows")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCENARIOS_STORE__URL", f"file://{root / 'store'}")
        patch.setenv("SCENARIOS_VALIDATION__SEEDS", "2")
        # One sandbox worker per run: each preloads build123d (~3 s of CPU), and this machine has 2 cores.
        patch.setenv("SCENARIOS_SANDBOX__WORKERS", "1")
        patch.setenv("SCENARIOS_LLM__PROVIDER", "offline")
        yield root


@pytest.fixture(scope="module")
def pair(prefect_api: None, flow_env: Path) -> dict[str, State[Any]]:
    """Two generate runs of 4 test_dummy scenarios started at once: 8 seeds for 4 slots."""
    from flows.generate import generate

    def run(run_id: str) -> State[Any]:
        return generate(tier="test_dummy", count=PER_RUN, run_id=run_id, return_state=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        states = dict(zip(RUNS, pool.map(run, RUNS)))
    return states


@pytest.fixture
def local_store(flow_env: Path) -> DatasetStore:
    return DatasetStore.from_url(f"file://{flow_env / 'store'}")


def test_generate_stages_every_scenario_and_says_what_passed(pair: dict[str, State[Any]], local_store: DatasetStore) -> None:
    for run_id, state in pair.items():
        assert state.is_completed(), state.message
        result = state.result()
        assert (result.run_id, result.passed, result.failed, result.complete) == (run_id, PER_RUN, 0, True)
        assert all(counts.passed == PER_RUN and counts.failed == 0 for counts in result.stage_counts.values())
        staged = [sid for sid in list_scenarios(local_store, "staging") if sid.startswith(f"{run_id}_")]
        assert staged == [f"{run_id}_{seed}" for seed in range(PER_RUN)]
        for scenario_id in staged:
            folder = local_store.local_root / staging_prefix(scenario_id)  # type: ignore[operator]
            assert {"scenario.py", "scene.xml", "validation.json", "preview.png", "manifest.json"} <= {
                p.name for p in folder.iterdir()
            }
        record = read_run_record(local_store, run_id)
        assert record.passed == PER_RUN and len(record.outcomes) == PER_RUN


def test_at_most_four_seeds_generate_at_once_across_runs(pair: dict[str, State[Any]]) -> None:
    slots = [
        (seed.slot_acquired_at, seed.slot_released_at)
        for state in pair.values()
        for seed in state.result().seeds
        if seed.slot_acquired_at and seed.slot_released_at
    ]
    assert len(slots) == 2 * PER_RUN
    assert 1 < max_overlap(slots) <= 4
    # Prefect's own task-run timestamps: each run's 4-thread task runner never runs more than 4 tasks.
    with get_client(sync_client=True) as client:
        for state in pair.values():
            flow_run_id = state.state_details.flow_run_id
            assert flow_run_id is not None
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            spans = [(run.start_time, run.end_time) for run in task_runs if run.start_time and run.end_time]
            assert len(spans) == PER_RUN
            assert 1 < max_overlap(spans) <= 4


def test_generate_publishes_a_stage_table_and_a_report_with_previews(pair: dict[str, State[Any]]) -> None:
    flow_run_id = pair[RUNS[0]].state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key = {artifact.key: artifact for artifact in artifacts}
    table = by_key["generated-scenarios"].data
    rows = table if isinstance(table, list) else json.loads(str(table))
    assert [row["scenario"] for row in rows] == [f"{RUNS[0]}_{seed}" for seed in range(PER_RUN)]
    assert {row["task"] for row in rows} == {"pass"}
    report = str(by_key["generation-report"].data)
    assert report.count("data:image/png;base64,") == PER_RUN
    assert "| task | 4 | 0 |" in report
    assert by_key["generation-progress"].data == 100.0
    stages = by_key["generation-stages"].data
    stages = stages if isinstance(stages, list) else json.loads(str(stages))
    assert {row["stage"]: (row["passed"], row["failed_here"]) for row in stages}["task"] == (PER_RUN, 0)


def test_generate_resumes_a_finished_run_without_redoing_seeds(pair: dict[str, State[Any]], prefect_api: None) -> None:
    from flows.generate import generate

    started = time.perf_counter()
    state = generate(tier="test_dummy", count=PER_RUN, run_id=RUNS[0], return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result.passed == PER_RUN and all(seed.outcome.reused for seed in result.seeds)
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        pytest.param({"tier": "tier9"}, "unknown tier 'tier9'", id="unknown-tier"),
        pytest.param({"count": 0}, "count must be an integer from 1", id="count-zero"),
        pytest.param({"max_concurrency": 8}, "max_concurrency must be from 1 to 4", id="too-parallel"),
        pytest.param({"provider": "acme"}, "llm.provider", id="unknown-provider"),
        pytest.param({"run_id": "../escape"}, "invalid run id", id="run-id-traversal"),
    ],
)
def test_generate_refuses_bad_input_with_a_clear_message(
    prefect_api: None, flow_env: Path, parameters: dict[str, Any], message: str
) -> None:
    from flows.generate import generate

    state = generate(**{"tier": "test_dummy", "count": 1, **parameters}, return_state=True)
    assert state.is_failed()
    assert message in (state.message or "")


def test_generate_fails_fast_when_the_store_is_unreachable(prefect_api: None, flow_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.generate import generate

    monkeypatch.setenv("SCENARIOS_STORE__ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("SCENARIOS_STORE__ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCENARIOS_STORE__SECRET_KEY", SECRET_KEY)
    state = generate(tier="test_dummy", count=1, store_url="s3://nowhere-bucket/x", return_state=True)
    assert state.is_failed()
    assert "cannot reach the dataset store" in (state.message or "")


def test_generate_refuses_to_run_without_the_global_limit(prefect_api: None, flow_env: Path) -> None:
    from flows.generate import generate

    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(LIMIT)
    try:
        state = generate(tier="test_dummy", count=1, return_state=True)
    finally:
        create_limit()
    assert state.is_failed()
    assert f"prefect gcl create {LIMIT} --limit 4" in (state.message or "")


def test_generate_and_promote_on_s3(prefect_api: None, flow_env: Path, moto_s3: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.generate import generate
    from flows.promote import promote

    monkeypatch.setenv("SCENARIOS_STORE__ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("SCENARIOS_STORE__ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCENARIOS_STORE__SECRET_KEY", SECRET_KEY)
    url = f"s3://{moto_s3.fresh_bucket_name()}/data"
    try:
        state = generate(tier="test_dummy", count=2, store_url=url, return_state=True)
        assert state.is_completed(), state.message
        run_id = state.result().run_id
        assert run_id.startswith("test-dummy-")  # named after the flow run, not given
        store = DatasetStore.from_url(url, endpoint_url=moto_s3.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        assert list_scenarios(store, "staging") == [f"{run_id}_0", f"{run_id}_1"]

        promoted = promote(dest="v1", run_id=run_id, store_url=url)
        assert promoted.promoted == [f"{run_id}_0", f"{run_id}_1"]
        manifest = read_manifest(store, "v1")
        assert manifest is not None and manifest.scenario_ids == promoted.promoted
        assert list_scenarios(store, "staging") == []

        again = promote(dest="v1", scenario_ids=[f"{run_id}_0"], store_url=url)
        assert (again.promoted, again.already_present) == ([], [f"{run_id}_0"])
        for parameters, message in [
            ({"run_id": "no-such-run"}, "unknown run id 'no-such-run'"),
            ({"run_id": run_id, "dest": "../escape"}, "invalid benchmark destination"),
        ]:
            failed = promote(**{"dest": "v1", "store_url": url, **parameters}, return_state=True)
            assert failed.is_failed() and message in (failed.message or "")
    finally:
        moto_s3.reset()


def _wait_for_paused_review(timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["review"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
            if runs:
                return runs[0]
            time.sleep(0.5)
    raise AssertionError("the review flow run never paused for input")


def test_review_shows_previews_and_promotes_what_the_reviewer_approves(
    pair: dict[str, State[Any]], local_store: DatasetStore
) -> None:
    from flows.review import review

    run_id = RUNS[1]
    outcome: dict[str, State[Any]] = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault("state", review(run_id=run_id, dest="reviewed", poll_interval_s=1, return_state=True))
    )
    thread.start()
    try:
        paused = _wait_for_paused_review()
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[paused.id])))
        review_page = next(str(a.data) for a in artifacts if a.key == "scenario-review")
        assert review_page.count("data:image/png;base64,") == PER_RUN
        png = base64.b64decode(review_page.split("data:image/png;base64,", 1)[1].split(")", 1)[0])
        assert png.startswith(b"\x89PNG")
        assert "| harness seed | scale | code | geometry | mjcf | stability | task |" in review_page
        # The form only accepts the staged ids.
        with pytest.raises(RuntimeError, match="Cannot resume"):
            resume_flow_run(paused.id, run_input={"approved": ["someone-else_3"]})
        approved = [f"{run_id}_0", f"{run_id}_2"]
        resume_flow_run(paused.id, run_input={"approved": approved, "comment": "the other two look flat"})
    finally:
        thread.join(timeout=120)
    state = outcome["state"]
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.approved, result.rejected) == (approved, [f"{run_id}_1", f"{run_id}_3"])
    manifest = read_manifest(local_store, "reviewed")
    assert manifest is not None and manifest.scenario_ids == approved
    assert all(is_committed(local_store, staging_prefix(sid)) for sid in result.rejected)


def test_review_of_an_unknown_run_fails_with_the_reason(prefect_api: None, flow_env: Path) -> None:
    from flows.review import review

    state = review(run_id="never-generated", return_state=True)
    assert state.is_failed() and "has no staged scenarios" in (state.message or "")


def test_list_flow_lists_a_runs_staged_scenarios(pair: dict[str, State[Any]]) -> None:
    from flows.listing import ListingArea, list_scenarios_flow

    rows = list_scenarios_flow(area=ListingArea.STAGING, run_id=RUNS[0])
    assert [row["scenario"] for row in rows] == [f"{RUNS[0]}_{seed}" for seed in range(PER_RUN)]
    assert list_scenarios_flow(area=ListingArea.FAILURES, run_id=RUNS[0]) == []
    failed = list_scenarios_flow(area=ListingArea.BENCHMARK, return_state=True)
    assert failed.is_failed() and "dest=" in (failed.message or "")


def test_export_traces_flow_writes_a_dataset_from_the_stored_spans(pair: dict[str, State[Any]], flow_env: Path) -> None:
    from flows.export_traces import export_traces_flow

    out = flow_env / "dataset"
    first = export_traces_flow(out_dir=str(out))
    assert isinstance(first["rows_added"], int) and first["rows_added"] > 0 and (out / "sft.jsonl").is_file()
    second = export_traces_flow(out_dir=str(out))
    assert second["rows_added"] == 0 and second["rows_total"] == first["rows_total"]


def _scripted_seeds(outcomes: dict[int, Exception | bool]) -> Any:
    """A stand-in for `generate_seed` (to reach the failure branches): per seed, pass, fail or raise."""
    from scenario_lib.runs.generation import SeedOutcome

    def fake(context: Any, job: Any, seed: int) -> SeedOutcome:
        result = outcomes.get(seed, True)
        if isinstance(result, Exception):
            raise result
        return SeedOutcome(
            scenario_id=f"{job.run_id}_{seed}", seed=seed, passed=result, stage_reached="task" if result else "stability"
        )

    return fake


def test_generate_fails_when_the_headroom_is_spent(prefect_api: None, flow_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.generate
    import flows.seeds

    monkeypatch.setattr(flows.seeds, "generate_seed", _scripted_seeds({1: False, 2: False}))
    state = flows.generate.generate(tier="test_dummy", count=2, headroom=1, run_id="spent-1", return_state=True)
    assert state.is_failed()
    assert "1/2 scenarios passed (INCOMPLETE)" in (state.message or "")
    assert "re-run with run_id=spent-1 and a larger headroom" in (state.message or "")


def test_a_seed_that_keeps_failing_stops_the_run_and_says_how_to_resume(
    prefect_api: None, flow_env: Path, local_store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.generate
    import flows.seeds
    from scenario_lib.errors import ConfigError

    # A ConfigError is not retried (a retry would not fix it), so the failure branch is reached at once.
    monkeypatch.setattr(flows.seeds, "generate_seed", _scripted_seeds({1: ConfigError("broken seed")}))
    state = flows.generate.generate(tier="test_dummy", count=3, max_concurrency=1, run_id="stops-1", return_state=True)
    assert state.is_failed()
    assert "seed 1 failed after its retries with ConfigError: broken seed" in (state.message or "")
    assert "re-run with run_id=stops-1 to resume" in (state.message or "")
    assert [outcome.seed for outcome in read_run_record(local_store, "stops-1").outcomes] == [0]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        pytest.param("StoreError", True, id="store"),
        pytest.param("SandboxError", True, id="sandbox"),
        pytest.param("TimeoutError", True, id="timeout"),
        pytest.param("ConfigError", False, id="config"),
        pytest.param("MjcfError", False, id="mjcf"),
    ],
)
def test_only_transient_errors_are_retried(error: str, retried: bool) -> None:
    import builtins

    from prefect.states import Failed

    import scenario_lib.errors
    from flows.seeds import is_transient as _is_transient

    kind = getattr(scenario_lib.errors, error, None) or getattr(builtins, error)
    assert _is_transient(None, None, Failed(data=kind("boom"))) is retried  # type: ignore[arg-type]
