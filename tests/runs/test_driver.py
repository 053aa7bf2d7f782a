"""The run driver: one seed loop for the CLI and the flow, with the flow's behaviour on a seed error."""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from scenario_lib.agent.providers import OfflineChatModel
from scenario_lib.errors import ConfigError, SandboxError, StoreError
from scenario_lib.runs.driver import SeedFuture, drive_run, run_generation
from scenario_lib.runs.generation import GenerationContext, GenerationJob, SeedOutcome, read_run_record
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.tiers import Tier
from scenario_lib.validation.pipeline import HarnessConfig, Validator


class QueueSubmitter:
    """Seeds finish in submission order; ``failing`` seeds raise. Records what was submitted and the peak in flight."""

    def __init__(self, failing: Collection[int] = ()) -> None:
        self.failing = set(failing)
        self.submitted: list[int] = []
        self.in_flight: list[Future[SeedOutcome]] = []
        self.peak = 0

    def submit(self, seed: int) -> Future[SeedOutcome]:
        future: Future[SeedOutcome] = Future()
        future.seed = seed  # type: ignore[attr-defined]
        self.submitted.append(seed)
        self.in_flight.append(future)
        self.peak = max(self.peak, len(self.in_flight))
        return future

    def first_done(self, futures: Collection[SeedFuture[SeedOutcome]]) -> SeedFuture[SeedOutcome]:
        future = self.in_flight.pop(0)
        assert future in futures
        seed: int = future.seed  # type: ignore[attr-defined]
        if seed in self.failing:
            future.set_exception(StoreError(f"the store went away while seed {seed} was committed"))
        else:
            future.set_result(SeedOutcome(scenario_id=f"seam_{seed}", seed=seed, passed=seed % 3 != 0, stage_reached="task"))
        return future


def context_on(store: DatasetStore, validator: Any = None) -> GenerationContext:
    return GenerationContext(
        store=store, validator=validator, chat_model=OfflineChatModel(), provider="offline", model=None, render_preview=False
    )


def test_the_driver_keeps_the_window_full_and_stops_at_the_count(tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    submitter = QueueSubmitter()
    job = GenerationJob(run_id="seam", tier=Tier.TEST_DUMMY, count=4, base_seed=0)

    driven = drive_run(context_on(store), job, submitter, lambda outcome: outcome, max_concurrency=3)

    # Seeds 0 and 3 fail (seed % 3 == 0), so 6 seeds make 4 passes; never more than 3 at once.
    assert driven.summary.passed == 4 and driven.summary.complete and not driven.errors
    assert submitter.peak == 3 and submitter.submitted == [0, 1, 2, 3, 4, 5]
    assert [o.seed for o in read_run_record(store, "seam").outcomes] == [0, 1, 2, 3, 4, 5]
    driven.raise_if_stopped(resume_with="--run-id seam")  # nothing to raise


def test_a_seed_error_lets_the_running_seeds_finish_writes_the_record_then_raises(tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    submitter = QueueSubmitter(failing={1})
    job = GenerationJob(run_id="seam", tier=Tier.TEST_DUMMY, count=10, base_seed=0)

    driven = drive_run(context_on(store), job, submitter, lambda outcome: outcome, max_concurrency=3)

    # Seed 0 finished and seed 3 took its slot; then seed 1 failed: 2 and 3 finish and are recorded,
    # and no new seed starts.
    assert submitter.submitted == [0, 1, 2, 3]
    assert [seed for seed, _ in driven.errors] == [1]
    record = read_run_record(store, "seam")
    assert [o.seed for o in record.outcomes] == [0, 2, 3] and record.finished_at
    with pytest.raises(StoreError) as info:
        driven.raise_if_stopped(resume_with="run_id=seam", retried=True)
    message = str(info.value)
    assert "run seam stopped: seed 1 failed after its retries with StoreError" in message
    assert "the run record is written" in message and "re-run with run_id=seam to resume" in message
    assert isinstance(info.value.__cause__, StoreError)


def test_the_bound_is_the_callers(tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    job = GenerationJob(run_id="seam", tier=Tier.TEST_DUMMY, count=1)
    with pytest.raises(ConfigError, match="at least 1"):
        drive_run(context_on(store), job, QueueSubmitter(), lambda outcome: outcome, max_concurrency=0)
    with pytest.raises(ConfigError, match="from 1 to 64"):
        run_generation(context_on(store), job, max_concurrency=65)


class CrashingValidator:
    """The real validator, except that the sandbox "crashes" for one base seed (to reach that branch)."""

    def __init__(self, validator: Validator, crash_seed: int) -> None:
        self._validator = validator
        self._crash_seed = crash_seed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._validator, name)

    def validate_script(self, source: str, *, base_seed: int = 0, **kwargs: Any) -> Any:
        if base_seed == self._crash_seed:
            raise SandboxError("a sandbox worker died while building the scenario (simulated crash)")
        return self._validator.validate_script(source, base_seed=base_seed, **kwargs)


@pytest.fixture(scope="module")
def validator(sandbox_pool: SandboxPool) -> Validator:
    return Validator(sandbox_pool, HarnessConfig(seeds=1))


def test_a_crashed_cli_run_is_recorded_and_resumes(tmp_path: Path, validator: Validator) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path}")
    job = GenerationJob(run_id="crashy", tier=Tier.TEST_DUMMY, count=3, base_seed=0)

    with pytest.raises(SandboxError, match=r"run crashy stopped: seed 1 failed with SandboxError.*run id crashy to resume"):
        run_generation(context_on(store, CrashingValidator(validator, crash_seed=1)), job, max_concurrency=1)

    # The record exists (analyze sees the run) and holds the seed that finished before the crash.
    record = read_run_record(store, "crashy")
    assert [o.seed for o in record.outcomes] == [0] and record.outcomes[0].passed
    summary = run_generation(context_on(store, validator), job, max_concurrency=2)
    assert summary.complete and [o.reused for o in summary.outcomes] == [True, False, False]
    assert list_scenarios(store, "staging") == ["crashy_0", "crashy_1", "crashy_2"]
