"""The ``generate`` flow: a run of seeds, each one Prefect task (author → validate → commit to the store).

Parallelism: the flow keeps up to ``max_concurrency`` seed tasks submitted (the `SeedSchedule` sliding
window) on a 4-thread task runner, and every task holds one slot of the global concurrency limit
``scenario-generation`` (4 slots, created by ``scripts/stack.sh up``) while it generates, so at most 4
seeds run at once across all runs and workers. On the threads the slots are the run's own, taken once
and handed from seed to seed (`flows.slots.HeldSlots`); on Dask each seed takes one. The limit is
acquired strictly: a missing limit fails the run instead of silently running unlimited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from scenario_lib.config import Settings
from scenario_lib.errors import ConfigError
from scenario_lib.runs.driver import DrivenRun, SeedFuture, drive_run
from scenario_lib.runs.generation import GenerationContext, GenerationJob, SeedSchedule, new_run_id, open_generation_context
from scenario_lib.store.layout import FAILURES_PREFIX, STAGING_PREFIX, validate_run_id
from scenario_lib.tiers import Tier, resolve_tier

from flows.artifacts import publish_generation
from flows.parameters import settings_for
from flows.results import GenerationResult, SeedRun
from flows.seeds import GENERATION_LIMIT, GENERATION_SLOTS, WorkerContext, generate_seed_task
from flows.slots import HeldSlots
from flows.telemetry import install_tracer_provider, store_process_spans

PROGRESS_KEY = "generation-progress"

# A worker's flow-run process imports this module before Prefect opens the flow-run span: installing
# the tracer provider now makes that span, the task spans and the agent's spans one trace.
install_tracer_provider()


def require_generation_limit(name: str = GENERATION_LIMIT) -> None:
    """Fail fast, with the fix, when the global concurrency limit is missing or disabled."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound as err:
            raise ConfigError(
                f"the global concurrency limit {name!r} does not exist on the Prefect server, so generation "
                f"cannot be capped at {GENERATION_SLOTS} seeds at once; create it with "
                f"`prefect gcl create {name} --limit {GENERATION_SLOTS}` (scripts/stack.sh up does)"
            ) from err
    if not limit.active:
        raise ConfigError(
            f"the global concurrency limit {name!r} is disabled, so it would not cap generation; "
            f"enable it with `prefect gcl enable {name}`"
        )


def _default_run_id() -> str:
    """A run id fixed by this flow run (its start time and id), so a retry of the flow run resumes it."""
    parameters = flow_run.parameters or {}
    if parameters.get("run_id"):
        return str(parameters["run_id"])
    try:
        tier: Tier | None = resolve_tier(str(parameters.get("tier", "")))
    except ConfigError:
        tier = None  # the flow body reports the bad tier; a name must not fail
    started = flow_run.scheduled_start_time or datetime.now(timezone.utc)
    return new_run_id(tier, at=started, token=str(flow_run.id or "")[:6] or "local")


def _flow_run_uuid() -> UUID | None:
    """This flow run's id, to name it as the holder of its slots (None outside a flow run)."""
    run_id = flow_run.id
    return UUID(str(run_id)) if run_id else None


class TaskRunnerKind(str, Enum):
    """Where the seed tasks run: threads of the flow-run process, or a Dask cluster."""

    THREAD = "thread"
    DASK = "dask"


@dataclass(frozen=True)
class DaskOptions:
    """The ``dask`` runner's cluster: a temporary LocalCluster of ``workers`` processes, or ``address``."""

    address: str | None = None
    workers: int = 2
    threads_per_worker: int = 2


@contextmanager
def _seed_submitter(
    kind: TaskRunnerKind, context: GenerationContext, settings: Settings, job: GenerationJob, dask: DaskOptions, lanes: int
) -> Iterator[Callable[[int], PrefectFuture[SeedRun]]]:
    """A function that submits one seed's task on the chosen runner (a Dask cluster, or the ``lanes`` slots the
    run's threads hold, live as long as this)."""
    if kind is TaskRunnerKind.THREAD:
        # The run's seeds share its held slots of the global limit (flows/slots.py), given back when it ends.
        with HeldSlots(GENERATION_LIMIT, lanes, flow_run_id=_flow_run_uuid()) as slots:
            # quote(): Prefect hands these over as they are instead of walking and copying them.
            yield lambda seed: generate_seed_task.submit(quote(context), quote(job), seed, quote(slots))  # type: ignore[call-overload,no-any-return]
        return
    from prefect_dask import DaskTaskRunner

    runner = (
        DaskTaskRunner(address=dask.address)
        if dask.address
        else DaskTaskRunner(
            # processes: each Dask worker has its own GIL and opens its own sandbox pool (see flows/seeds.py).
            cluster_kwargs={"n_workers": dask.workers, "threads_per_worker": dask.threads_per_worker, "processes": True}
        )
    )
    worker_context = WorkerContext(settings=settings, trace_label=job.run_id)
    with runner:
        yield lambda seed: runner.submit(  # type: ignore[return-value]
            generate_seed_task, parameters={"context": worker_context, "job": job, "seed": seed}
        )


class ProgressUpdates:
    """The run's progress artifact, kept current by a thread of its own: the run's driver never waits on
    the server (its next seed would wait meanwhile), and an update is sent at most once per
    ``interval_s`` (each is a server write and an event: per seed they cost more than the UI gains) and
    once more at `close`. A failed update is logged, not raised: the progress bar is a convenience."""

    def __init__(
        self, send: Callable[[float], object], log: logging.LoggerAdapter[Any] | logging.Logger, interval_s: float = 1.0
    ) -> None:
        self._send, self._log, self._interval_s = send, log, interval_s
        self._latest: float | None = None
        self._sent: float | None = None
        self._wake, self._closing = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="generation-progress", daemon=True)
        self._thread.start()

    def update(self, percent: float) -> None:
        self._latest = percent
        self._wake.set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Send the latest value (when not sent yet) and stop."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._send_latest()
            if self._closing.is_set():
                self._send_latest()  # an update that came while the one before was being sent
                return
            self._closing.wait(self._interval_s)  # the pace; closing cuts it short

    def _send_latest(self) -> None:
        latest = self._latest
        if latest is None or latest == self._sent:
            return
        try:
            self._send(latest)
            self._sent = latest
        except Exception as err:  # noqa: BLE001 - see the class docstring
            self._log.warning("could not update the progress artifact: %s: %s", type(err).__name__, err)


class PrefectSubmitter:
    """The run driver's seam on Prefect task futures (see `scenario_lib.runs.driver`)."""

    def __init__(self, submit: Callable[[int], PrefectFuture[SeedRun]]) -> None:
        self.submit = submit

    def first_done(self, futures: Collection[SeedFuture[SeedRun]]) -> SeedFuture[SeedRun]:
        return next(as_completed(list(futures)))  # type: ignore[arg-type]  # they are Prefect futures


def _drive(
    submit: Callable[[int], PrefectFuture[SeedRun]],
    context: GenerationContext,
    job: GenerationJob,
    max_concurrency: int,
    progress_id: Any,
) -> DrivenRun[SeedRun]:
    """Drive the run on Prefect tasks, logging each seed and updating the progress artifact."""
    logger = get_run_logger()
    progress = ProgressUpdates(lambda percent: update_progress_artifact(progress_id, percent), logger)

    def on_result(seed_run: SeedRun, schedule: SeedSchedule) -> None:
        outcome = seed_run.outcome
        logger.info(
            "seed %d %s at %s (%d attempts, %.1f s); %d/%d passed",
            outcome.seed, "passed" if outcome.passed else "failed", outcome.stage_reached, outcome.attempts,
            outcome.duration_s, schedule.passed, job.count,
        )  # fmt: skip
        progress.update(min(100.0, 100.0 * schedule.passed / job.count))

    def on_error(seed: int, error: BaseException) -> None:
        logger.error("seed %d failed after its retries: %s: %s", seed, type(error).__name__, error)

    try:
        driven = drive_run(
            context,
            job,
            PrefectSubmitter(submit),
            lambda seed_run: seed_run.outcome,
            max_concurrency=max_concurrency,
            on_result=on_result,
            on_error=on_error,
        )
    finally:
        progress.close()
    if driven.reused:
        logger.info("resumed run %s: %d seeds were already finished", job.run_id, len(driven.reused))
    return driven


def _check_bounds(max_concurrency: int, dask_workers: int) -> None:
    if not 1 <= max_concurrency <= GENERATION_SLOTS:
        raise ConfigError(
            f"max_concurrency must be from 1 to {GENERATION_SLOTS} (the slots of the global limit "
            f"{GENERATION_LIMIT!r}), got {max_concurrency}"
        )
    if not 1 <= dask_workers <= 64:
        raise ConfigError(f"dask_workers must be from 1 to 64, got {dask_workers}")


def _generation_result(driven: DrivenRun[SeedRun], context: GenerationContext) -> GenerationResult:
    """The flow's result: the run record's figures, where things are, and every seed (reused ones too)."""
    summary, job = driven.summary, driven.job
    runs = {seed: SeedRun(outcome=outcome) for seed, outcome in driven.reused.items()} | driven.results
    return GenerationResult(
        run_id=job.run_id,
        tier=job.tier.value,
        count=job.count,
        passed=summary.passed,
        failed=summary.failed,
        complete=summary.complete,
        duration_s=summary.duration_s,
        stage_counts=summary.stage_counts(),
        staging_url=context.store.url_for(STAGING_PREFIX),
        failures_url=context.store.url_for(FAILURES_PREFIX),
        run_record_url=driven.record_url,
        seeds=[runs[seed] for seed in sorted(runs)],
    )


@flow(
    name="generate",
    flow_run_name=_default_run_id,
    task_runner=ThreadPoolTaskRunner(max_workers=GENERATION_SLOTS),  # type: ignore[arg-type]  # Prefect's generics
    validate_parameters=True,
)
def generate(
    tier: str = "test_dummy",
    count: int = 10,
    prompt: str | None = None,
    base_seed: int = 0,
    headroom: int | None = None,
    provider: str | None = None,
    store_url: str | None = None,
    max_concurrency: int = GENERATION_SLOTS,
    run_id: str | None = None,
    task_runner: TaskRunnerKind = TaskRunnerKind.THREAD,
    dask_address: str | None = None,
    dask_workers: int = 2,
) -> GenerationResult:
    """Generate ``count`` valid scenarios of ``tier`` into ``staging/{run_id}_{seed}/`` of the store.

    Seeds ``base_seed, base_seed + 1, …`` are tried until ``count`` pass or ``count + headroom`` seeds
    were spent (headroom defaults to ``count``). Failed seeds are kept under ``failures/`` with their
    reports. ``provider`` and ``store_url`` override the worker's settings; ``run_id`` resumes a run.
    The flow run fails when fewer than ``count`` passed, naming how to continue.

    ``task_runner="dask"`` runs the seed tasks on a Dask cluster instead of the flow-run process's
    threads: a temporary LocalCluster of ``dask_workers`` processes, or the scheduler at
    ``dask_address`` (``tcp://host:8786``). Each Dask worker opens its own sandbox pool; the global
    concurrency limit still caps the seeds running at once.
    """
    logger = get_run_logger()
    settings = settings_for(store_url=store_url, provider=provider)
    job = GenerationJob(
        run_id=validate_run_id(run_id or _default_run_id()),
        tier=resolve_tier(tier),
        count=count,
        prompt=prompt,
        base_seed=base_seed,
        headroom=headroom,
    )
    _check_bounds(max_concurrency, dask_workers)
    require_generation_limit()
    progress_id = create_progress_artifact(
        progress=0.0, key=PROGRESS_KEY, description=f"Scenarios passed in run {job.run_id}"
    )
    with open_generation_context(settings, trace_label=job.run_id, seeds_at_once=min(job.count, max_concurrency)) as context:
        logger.info(
            "run %s: %d %s scenarios, up to %d seeds, %d at once, store %s",
            job.run_id, job.count, job.tier.value, job.max_seeds, max_concurrency, context.store.describe(),
        )  # fmt: skip
        dask = DaskOptions(address=dask_address, workers=dask_workers)
        with _seed_submitter(TaskRunnerKind(task_runner), context, settings, job, dask, max_concurrency) as submit:
            driven = _drive(submit, context, job, max_concurrency, progress_id)
        result = _generation_result(driven, context)
        publish_generation(result, context.store)
        store_process_spans(context.store, label=f"prefect-{job.run_id}")
    logger.info(result.describe())
    driven.raise_if_stopped(resume_with=f"run_id={job.run_id}", retried=True, wrap_unexpected=True)
    if not result.complete:
        return Failed(  # type: ignore[return-value]
            message=(
                f"{result.describe()}: the headroom of {job.max_seeds - job.count} extra seeds is spent; "
                f"re-run with run_id={job.run_id} and a larger headroom to continue"
            ),
            data=result,
        )
    return result


__all__ = [
    "GENERATION_LIMIT",
    "GENERATION_SLOTS",
    "TaskRunnerKind",
    "generate",
    "generate_seed_task",
    "require_generation_limit",
]
