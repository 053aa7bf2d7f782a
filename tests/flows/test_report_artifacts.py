"""What the generate flow's report artifact holds, built from a real local store (no Prefect server needed)."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import pytest

from scenario_lib.report import Stage
from scenario_lib.runs.generation import SeedOutcome, StageCount
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import join_key, staging_prefix
from scenario_lib.validation.artifacts import PREVIEW_FILE

from flows.artifacts import REPORT_PREVIEWS, generation_report
from flows.results import GenerationResult, SeedRun

RUN = "tier1-20261207-120000-abc123"


def run_result(store: DatasetStore, passed: int, failed: int) -> GenerationResult:
    """A run of ``passed`` staged scenarios, each with a distinct preview, and ``failed`` failed seeds."""
    seeds = []
    for seed in range(passed + failed):
        scenario_id = f"{RUN}_{seed}"
        ok = seed < passed
        if ok:
            store.write_bytes(join_key(staging_prefix(scenario_id), PREVIEW_FILE), b"\x89PNG seed %d" % seed)
        outcome = SeedOutcome(
            scenario_id=scenario_id,
            seed=seed,
            passed=ok,
            stage_reached=Stage.TASK if ok else Stage.STABILITY,
            family="push_box",
            message="" if ok else f"seed {seed} fell over",
        )
        seeds.append(SeedRun(outcome=outcome))
    return GenerationResult(
        run_id=RUN,
        tier="tier1",
        count=passed,
        passed=passed,
        failed=failed,
        complete=True,
        duration_s=1.0,
        stage_counts={"task": StageCount(passed=passed, failed=0)},
        staging_url="file:///store/staging",
        failures_url="file:///store/failures",
        run_record_url="file:///store/runs/x.json",
        seeds=seeds,
    )


def inline_images(report: str) -> list[bytes]:
    return [base64.b64decode(part.split(")", 1)[0]) for part in report.split("data:image/png;base64,")[1:]]


def test_a_small_run_shows_every_preview_and_every_failure(tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    report = generation_report(run_result(store, passed=3, failed=1), store)
    assert inline_images(report) == [b"\x89PNG seed %d" % seed for seed in range(3)]
    assert "more passed scenarios" not in report
    assert f"`{RUN}_3` stopped at **stability**: seed 3 fell over" in report


def test_a_large_run_shows_the_first_previews_and_names_the_rest(tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    report = generation_report(run_result(store, passed=REPORT_PREVIEWS + 5, failed=2), store)
    assert inline_images(report) == [b"\x89PNG seed %d" % seed for seed in range(REPORT_PREVIEWS)]
    assert "_5 more passed scenarios; see one with `scenarios show <scenario id>`" in report
    assert f"review/default -p run_id={RUN}" in report
    assert report.count("stopped at **stability**") == 2


def test_progress_is_sent_at_most_once_an_interval_and_always_at_the_end() -> None:
    from flows.generate import ProgressUpdates

    sent: list[float] = []
    progress = ProgressUpdates(sent.append, logging.getLogger("test"), interval_s=0.2)
    started = time.monotonic()
    for passed in range(1, 51):
        progress.update(2.0 * passed)
        time.sleep(0.01)
    elapsed_s = time.monotonic() - started
    progress.close()
    assert sent[0] == 2.0 and sent[-1] == 100.0
    assert sent == sorted(set(sent))
    assert 3 <= len(sent) <= elapsed_s / 0.2 + 2, (len(sent), elapsed_s)


def test_a_slow_or_failing_progress_update_never_holds_up_the_run(caplog: pytest.LogCaptureFixture) -> None:
    from flows.generate import ProgressUpdates

    sent: list[float] = []
    calls: list[float] = []

    def slow_and_first_failing(percent: float) -> None:
        calls.append(percent)
        time.sleep(0.3)
        if len(calls) == 1:
            raise ConnectionError("server gone")
        sent.append(percent)

    progress = ProgressUpdates(slow_and_first_failing, logging.getLogger("test"), interval_s=0.0)
    started = time.monotonic()
    for percent in (10.0, 20.0, 60.0):
        progress.update(percent)
        time.sleep(0.01)
    assert time.monotonic() - started < 0.2  # the driver never waited on the server
    progress.close()
    assert "could not update the progress artifact: ConnectionError: server gone" in caplog.text
    assert sent[-1] == 60.0  # the failed update did not stop the last one
