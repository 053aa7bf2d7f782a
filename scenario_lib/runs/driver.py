"""The run driver: one loop that keeps a run's seeds going, records them and writes the run record.

The CLI and the Prefect flow drive a run the same way; they differ only in how a seed's work is
started and awaited, which is the `SeedSubmitter` seam: threads in this process (`ThreadSubmitter`),
or Prefect task futures in the flow. The policy is one:

* up to ``max_concurrency`` seeds run at once (the bound is the caller's: the flow's is the global
  limit's 4 slots, the CLI's its own);
* seeds an earlier run of the same run id finished are reused, not redone (`finished_seeds`);
* a seed that raises (store down, sandbox broken, provider unreachable: not a verdict) stops new seeds
  from starting; the running ones finish and are recorded, the run record is written, and only then
  does the run raise (`DrivenRun.raise_if_stopped`). A crashed run is therefore always visible to
  ``analyze``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Generic, Protocol, TypeVar

from scenario_lib.errors import ConfigError, ScenarioError
from scenario_lib.runs.generation import (
    GenerationContext,
    GenerationJob,
    RunSummary,
    SeedOutcome,
    SeedSchedule,
    finished_seeds,
    generate_seed,
    start_summary,
    write_run_record,
)

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


class SeedFuture(Protocol[ResultT_co]):
    """What a submitted seed gives back: a `concurrent.futures.Future` or a Prefect future."""

    def result(self) -> ResultT_co: ...


class SeedSubmitter(Protocol[ResultT]):
    """Starts one seed's work and waits for the first of several to finish."""

    def submit(self, seed: int) -> SeedFuture[ResultT]: ...

    def first_done(self, futures: Collection[SeedFuture[ResultT]]) -> SeedFuture[ResultT]: ...


@dataclass
class DrivenRun(Generic[ResultT]):
    """What a driven run left: its summary (also stored as the run record) and each seed's result."""

    job: GenerationJob
    summary: RunSummary
    record_url: str
    results: dict[int, ResultT]  # the seeds this run finished, by seed
    reused: dict[int, SeedOutcome]  # the seeds an earlier run of this run id had finished
    errors: list[tuple[int, BaseException]] = field(default_factory=list)

    def raise_if_stopped(self, *, resume_with: str, retried: bool = False, wrap_unexpected: bool = False) -> None:
        """Raise the first seed error; nothing when no seed failed.

        A `ScenarioError` is raised again as its own type with the run's context: the seed, what is
        staged, and how to resume (``resume_with``, e.g. ``run_id=...``). Any other exception is raised
        unchanged, for the caller to present, unless ``wrap_unexpected`` makes it a `ScenarioError` too.
        """
        if not self.errors:
            return
        seed, error = self.errors[0]
        if not isinstance(error, ScenarioError) and not wrap_unexpected:
            raise error
        kind = type(error) if isinstance(error, ScenarioError) else ScenarioError
        failed = "failed after its retries with" if retried else "failed with"
        message = (
            f"run {self.job.run_id} stopped: seed {seed} {failed} {type(error).__name__}: {error}. "
            f"{self.summary.passed} scenarios are staged and the run record is written; fix the cause and "
            f"re-run with {resume_with} to resume"
        )
        try:
            stopped = kind(message)
        except TypeError:  # a subclass with its own constructor
            stopped = ScenarioError(message)
        raise stopped from error


def drive_run(
    context: GenerationContext,
    job: GenerationJob,
    submitter: SeedSubmitter[ResultT],
    outcome_of: Callable[[ResultT], SeedOutcome],
    *,
    max_concurrency: int,
    on_result: Callable[[ResultT, SeedSchedule], None] | None = None,
    on_error: Callable[[int, BaseException], None] | None = None,
) -> DrivenRun[ResultT]:
    """Drive ``job`` to its end with ``submitter``; write and return its record (see the module doc)."""
    if max_concurrency < 1:
        raise ConfigError(f"max concurrency must be at least 1, got {max_concurrency}")
    started = time.perf_counter()
    summary = start_summary(job, context)
    schedule = SeedSchedule(job, finished=finished_seeds(context.store, job.run_id))
    reused = dict(schedule.finished)
    results: dict[int, ResultT] = {}
    errors: list[tuple[int, BaseException]] = []
    running: dict[SeedFuture[ResultT], int] = {}
    while True:
        while not errors and len(running) < max_concurrency and (seed := schedule.next_seed()) is not None:
            running[submitter.submit(seed)] = seed
        if not running:
            break
        future = submitter.first_done(list(running))
        seed = running.pop(future)
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - reported once the running seeds have ended
            schedule.running.discard(seed)
            errors.append((seed, err))
            if on_error is not None:
                on_error(seed, err)
            continue
        schedule.record(outcome_of(result))
        results[seed] = result
        if on_result is not None:
            on_result(result, schedule)
    summary = summary.model_copy(
        update={
            "outcomes": schedule.outcomes(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.perf_counter() - started, 3),
        }
    )
    record_url = write_run_record(context.store, summary)
    return DrivenRun(job=job, summary=summary, record_url=record_url, results=results, reused=reused, errors=errors)


class ThreadSubmitter:
    """Seeds on threads of this process (the CLI's and the library's way)."""

    def __init__(self, executor: ThreadPoolExecutor, context: GenerationContext, job: GenerationJob) -> None:
        self._executor = executor
        self._context = context
        self._job = job

    def submit(self, seed: int) -> Future[SeedOutcome]:
        return self._executor.submit(generate_seed, self._context, self._job, seed)

    def first_done(self, futures: Collection[SeedFuture[SeedOutcome]]) -> SeedFuture[SeedOutcome]:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)  # type: ignore[arg-type]  # they are Futures
        return next(iter(done))  # type: ignore[no-any-return]


@contextmanager
def thread_submitter(context: GenerationContext, job: GenerationJob, max_workers: int) -> Iterator[ThreadSubmitter]:
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="seed") as executor:
        yield ThreadSubmitter(executor, context, job)


def run_generation(
    context: GenerationContext,
    job: GenerationJob,
    *,
    max_concurrency: int = 4,
    on_outcome: Callable[[SeedOutcome, SeedSchedule], None] | None = None,
    resume_with: str | None = None,
) -> RunSummary:
    """Run ``job`` in this process with up to ``max_concurrency`` seeds at once; store and return its summary.

    Raises after the run record is written when a seed failed with an error (see the module doc);
    ``resume_with`` is how the message says to resume (default: "run id <run_id>").
    """
    if not 1 <= max_concurrency <= 64:
        raise ConfigError(f"max concurrency must be from 1 to 64, got {max_concurrency}")
    with thread_submitter(context, job, max_concurrency) as submitter:
        driven = drive_run(
            context, job, submitter, lambda outcome: outcome, max_concurrency=max_concurrency, on_result=on_outcome
        )
    driven.raise_if_stopped(resume_with=resume_with or f"run id {job.run_id}")
    return driven.summary


__all__ = ["DrivenRun", "SeedFuture", "SeedSubmitter", "ThreadSubmitter", "drive_run", "run_generation", "thread_submitter"]
