"""Runs of seeds: the sliding-window schedule, real runs into file and S3 stores, resume, failures kept for RL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenario_lib.config import load_settings
from scenario_lib.errors import ConfigError
from scenario_lib.runs.generation import (
    GenerationContext,
    GenerationJob,
    SeedOutcome,
    SeedSchedule,
    finished_seeds,
    make_sandbox_pool,
    read_run_record,
)
from scenario_lib.runs.driver import run_generation
from scenario_lib.agent.providers import OfflineChatModel
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER
from scenario_lib.tiers import Tier
from scenario_lib.validation.pipeline import Validator
from tests.scripted_model import APPROVE, ScriptedChatModel, fenced
from tests.support import SCRIPTS

INTERPENETRATING = (SCRIPTS / "broken_interpenetrating.py").read_text()
PLAN = '{"family": "push_box", "summary": "push a cube", "verification_strategy": "goal away from the start"}'


def outcome(seed: int, passed: bool) -> SeedOutcome:
    return SeedOutcome(scenario_id=f"run_{seed}", seed=seed, passed=passed, stage_reached="task")


def test_a_generation_context_carries_every_option_the_agent_takes() -> None:
    from dataclasses import fields

    from scenario_lib.agent import AgentOptions

    context_fields = {field.name for field in fields(GenerationContext)}
    missing = (AgentOptions.__required_keys__ | AgentOptions.__optional_keys__) - context_fields
    assert not missing, f"GenerationContext lacks the agent options {sorted(missing)}"


def test_schedule_keeps_passed_plus_running_under_count_and_stops_at_the_headroom() -> None:
    schedule = SeedSchedule(GenerationJob(run_id="run", tier=Tier.TEST_DUMMY, count=3, base_seed=10, headroom=2))

    started = [schedule.next_seed() for _ in range(4)]

    assert started == [10, 11, 12, None]  # never more than count at once
    schedule.record(outcome(11, passed=False))
    assert schedule.next_seed() == 13  # a failure frees a place for a headroom seed
    for seed in (10, 12, 13):
        schedule.record(outcome(seed, passed=False))
    assert schedule.next_seed() == 14 and schedule.next_seed() is None  # 5 seeds = count + headroom
    assert not schedule.done
    schedule.record(outcome(14, passed=True))
    assert schedule.done and schedule.passed == 1
    assert [o.seed for o in schedule.outcomes()] == [10, 11, 12, 13, 14]


def test_schedule_skips_seeds_an_earlier_try_finished() -> None:
    job = GenerationJob(run_id="run", tier=Tier.TEST_DUMMY, count=2)
    schedule = SeedSchedule(job, finished={0: outcome(0, passed=True)})

    assert schedule.next_seed() == 1 and schedule.next_seed() is None
    schedule.record(outcome(1, passed=True))
    assert schedule.done


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"count": 0}, "count must be an integer from 1"),
        ({"count": 10**9}, "count must be an integer from 1"),
        ({"headroom": -1}, "headroom must be from 0"),
        ({"run_id": "../escape"}, "run id"),
        ({"prompt": "   "}, "the prompt is empty"),
        ({"base_seed": -5}, "base seed must be"),
    ],
    ids=["zero-count", "huge-count", "negative-headroom", "traversal-run-id", "blank-prompt", "negative-seed"],
)
def test_bad_jobs_are_refused_with_the_fix(fields: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"run_id": "run", "tier": Tier.TEST_DUMMY, "count": 2} | fields
    with pytest.raises(ConfigError, match=problem):
        GenerationJob(**arguments)  # type: ignore[arg-type]


def context_for(store: DatasetStore, validator: Validator, chat_model: object, max_attempts: int = 2) -> GenerationContext:
    return GenerationContext(
        store=store,
        validator=validator,
        chat_model=chat_model,  # type: ignore[arg-type]
        provider="offline",
        model=None,
        max_attempts=max_attempts,
        render_preview=True,
    )


def test_a_run_stages_count_scenarios_and_a_rerun_redoes_none(dataset_store: DatasetStore, validator: Validator) -> None:
    context = context_for(dataset_store, validator, OfflineChatModel())
    job = GenerationJob(run_id="dummy-run", tier=Tier.TEST_DUMMY, count=3, base_seed=7)
    seen: list[int] = []

    summary = run_generation(context, job, max_concurrency=2, on_outcome=lambda o, _: seen.append(o.seed))

    assert summary.complete and summary.passed == 3 and summary.failed == 0
    assert sorted(seen) == [7, 8, 9]
    assert list_scenarios(dataset_store, "staging") == ["dummy-run_7", "dummy-run_8", "dummy-run_9"]
    files = sorted(key.split("/", 2)[2] for key in dataset_store.list_files("staging/dummy-run_7"))
    assert {"scenario.py", "scene.xml", "validation.json", "manifest.json", "preview.png", COMMIT_MARKER} <= set(files)
    assert any(name.startswith("meshes/") and name.endswith(".stl") for name in files)
    manifest = json.loads(dataset_store.read_bytes("staging/dummy-run_7/manifest.json"))
    assert manifest["tier"] == "test_dummy" and manifest["seed"] == 7 and manifest["passed"] is True
    assert summary.stage_counts()["task"].passed == 3
    stored = read_run_record(dataset_store, "dummy-run")
    assert stored.passed == 3 and [o.seed for o in stored.outcomes] == [7, 8, 9]

    markers = {seed: dataset_store.read_bytes(f"staging/dummy-run_{seed}/{COMMIT_MARKER}") for seed in (7, 8, 9)}
    again = run_generation(context, job, max_concurrency=2)

    assert again.passed == 3 and all(o.reused for o in again.outcomes)
    # Nothing was rewritten: each commit marker (holding its commit time) is unchanged.
    assert markers == {seed: dataset_store.read_bytes(f"staging/dummy-run_{seed}/{COMMIT_MARKER}") for seed in (7, 8, 9)}


def test_failed_seeds_are_kept_under_failures_and_the_run_says_it_fell_short(tmp_path: Path, validator: Validator) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    coder = ScriptedChatModel(
        answers={"planner": [fenced("json", PLAN)], "coder": [fenced("python", INTERPENETRATING)], "reviewer": [APPROVE]}
    )
    context = context_for(store, validator, coder, max_attempts=1)
    job = GenerationJob(run_id="bad-run", tier=Tier.TEST_DUMMY, count=1, headroom=1)

    summary = run_generation(context, job, max_concurrency=2)

    assert not summary.complete and summary.passed == 0 and summary.failed == 2
    assert list_scenarios(store, "staging") == []
    assert list_scenarios(store, "failures") == ["bad-run_0_a1", "bad-run_1_a1"]
    report = json.loads(store.read_bytes("failures/bad-run_0_a1/validation.json"))
    failed_stages = {r["stage"] for seed in report["seeds"] for r in seed["stages"] if r["verdict"] == "fail"}
    assert failed_stages == {"stability"}
    assert json.loads(store.read_bytes("failures/bad-run_0_a1/manifest.json"))["passed"] is False
    assert store.read_bytes("failures/bad-run_0_a1/scenario.py").decode().strip() == INTERPENETRATING.strip()
    counts = summary.stage_counts()
    assert counts["stability"].failed == 2 and counts["task"].passed == 0
    assert "INCOMPLETE" in summary.describe()
    # The failures count as finished: a resumed run does not redo them.
    assert sorted(finished_seeds(store, "bad-run")) == [0, 1]


def test_a_context_stores_its_spans_under_traces_and_they_export(tmp_path: Path) -> None:
    from scenario_lib.runs.generation import open_generation_context
    from scenario_lib.insight.trace_export import export_store_traces, read_calls

    settings = load_settings(store={"url": f"file://{tmp_path / 'store'}"}, validation={"seeds": 2})
    with open_generation_context(settings, trace_label="traced-run") as context:
        run_generation(context, GenerationJob(run_id="traced-run", tier=Tier.TEST_DUMMY, count=1))
        store = context.store

    span_files = store.list_files("traces")
    assert len(span_files) == 1 and span_files[0].startswith("traces/traced-run-")
    summary = export_store_traces(store, tmp_path / "export")
    calls = read_calls(tmp_path / "export")
    assert summary is not None and {row["role"] for row in calls} >= {"planner", "coder"}


@pytest.mark.parametrize(
    ("configured", "seeds_at_once", "expected"),
    [(2, None, 2), (2, 1, 1), (2, 4, 2), (3, 2, 2)],
    ids=["unknown", "one-seed-run", "more-seeds-than-workers", "fewer-seeds-than-workers"],
)
def test_a_run_starts_no_more_sandbox_workers_than_seeds_at_once(configured: int, seeds_at_once: int | None, expected: int) -> None:
    settings = load_settings(sandbox={"workers": configured})

    with make_sandbox_pool(settings, seeds_at_once=seeds_at_once) as pool:  # not started: nothing spawns
        assert pool.workers == expected
