"""Running a batch: a resumable runner over the units of a batch file (`scenario_lib.runs.batch_spec`).

Progress is checkpointed in the store at ``batches/{name}.json`` after every seed (see
`BatchCheckpoint`); a batch killed at any point resumes from the store alone, and every unit re-runs
under its run id, which reuses every seed it committed. One runner per batch at a time: two runners of
one batch would write the same checkpoint.
"""


from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from scenario_lib.config import LlmSettings
from scenario_lib.errors import ConfigError
from scenario_lib.runs.batch_spec import BatchPlan, BatchUnit
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import BATCHES_PREFIX, batch_checkpoint_key

if TYPE_CHECKING:
    from scenario_lib.runs.generation import GenerationContext, RunSummary, SeedOutcome

CHECKPOINT_FORMAT_VERSION = 1


# --- the checkpoint -------------------------------------------------------------------------------------


class UnitState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"  # or killed while running: resumed like pending
    DONE = "done"  # count passed
    SHORT = "short"  # finished its seeds with fewer than count passed
    ERROR = "error"  # stopped by an error (store down, provider refused); retried on resume


class UnitProgress(BaseModel):
    unit: BatchUnit
    state: UnitState = UnitState.PENDING
    passed: int = 0
    failed: int = 0
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state in (UnitState.DONE, UnitState.SHORT)


class BatchCheckpoint(BaseModel):
    """A batch's progress, stored at ``batches/{name}.json`` and rewritten after every seed."""

    format_version: int = CHECKPOINT_FORMAT_VERSION
    name: str
    source: str = ""
    description: str = ""
    created_at: str
    updated_at: str = ""
    finished_at: str = ""
    units: list[UnitProgress] = Field(default_factory=list)

    @property
    def finished_units(self) -> int:
        return sum(progress.finished for progress in self.units)

    @property
    def passed(self) -> int:
        return sum(progress.passed for progress in self.units)

    @property
    def planned(self) -> int:
        return sum(progress.unit.count for progress in self.units)

    @property
    def complete(self) -> bool:
        return bool(self.units) and all(progress.finished for progress in self.units)

    def state(self) -> str:
        """complete, incomplete (stopped before the end) or short (finished with runs that fell short)."""
        if not self.complete:
            return "incomplete"
        return "short" if any(p.state is UnitState.SHORT for p in self.units) else "complete"

    def run_ids(self) -> list[str]:
        return [progress.unit.run_id for progress in self.units]


def read_checkpoint(store: DatasetStore, name: str) -> BatchCheckpoint | None:
    """The stored checkpoint of batch ``name``, or None when it never ran."""
    key = batch_checkpoint_key(name)
    data = store.read_bytes_if_exists(key)
    if data is None:
        return None
    try:
        return BatchCheckpoint.model_validate_json(data)
    except ValidationError as err:
        raise ConfigError(
            f"the checkpoint {store.url_for(key)} is unreadable ({err.errors()[0]['msg']}); move it aside to "
            "start the batch over (finished seeds are still reused)"
        ) from None


def list_checkpoints(store: DatasetStore) -> list[BatchCheckpoint]:
    names = [key.rsplit("/", 1)[-1].removesuffix(".json") for key in store.list_files(BATCHES_PREFIX, recursive=False)]
    found = [read_checkpoint(store, name) for name in sorted(names) if name]
    return [checkpoint for checkpoint in found if checkpoint is not None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def reconcile(plan: BatchPlan, existing: BatchCheckpoint | None) -> BatchCheckpoint:
    """The checkpoint to run ``plan`` from: finished units of ``existing`` whose definition is unchanged stay done."""
    previous = {progress.unit.run_id: progress for progress in existing.units} if existing else {}
    units = []
    for unit in plan.units:
        old = previous.get(unit.run_id)
        if old is not None and old.unit == unit and old.finished:
            units.append(old)
        else:
            # A changed count reuses the run id: its finished seeds count towards the new count.
            units.append(UnitProgress(unit=unit))
    return BatchCheckpoint(
        name=plan.name,
        source=plan.source,
        description=plan.spec.description,
        created_at=existing.created_at if existing else _now(),
        units=units,
    )


# --- running --------------------------------------------------------------------------------------------


class BatchEventKind(str, Enum):
    UNIT_STARTED = "unit_started"
    SEED_FINISHED = "seed_finished"
    UNIT_FINISHED = "unit_finished"


@dataclasses.dataclass(frozen=True)
class BatchEvent:
    kind: BatchEventKind
    progress: UnitProgress
    outcome: SeedOutcome | None = None
    summary: RunSummary | None = None


class _CheckpointWriter:
    """Serializes checkpoint updates from the unit threads and writes each one to the store."""

    def __init__(self, store: DatasetStore, checkpoint: BatchCheckpoint) -> None:
        self._store = store
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._key = batch_checkpoint_key(checkpoint.name)

    @property
    def checkpoint(self) -> BatchCheckpoint:
        return self._checkpoint

    def update(self, index: int, **changes: Any) -> UnitProgress:
        with self._lock:
            units = list(self._checkpoint.units)
            units[index] = units[index].model_copy(update=changes)
            finished = all(progress.finished for progress in units)
            self._checkpoint = self._checkpoint.model_copy(
                update={"units": units, "updated_at": _now(), "finished_at": _now() if finished else ""}
            )
            self._store.write_bytes(self._key, self._checkpoint.model_dump_json(indent=1).encode())
            return units[index]

    def write(self) -> None:
        with self._lock:
            self._checkpoint = self._checkpoint.model_copy(update={"updated_at": _now()})
            self._store.write_bytes(self._key, self._checkpoint.model_dump_json(indent=1).encode())


def run_batch(
    context: GenerationContext,
    plan: BatchPlan,
    *,
    llm_settings: Mapping[str, LlmSettings],
    resume: bool = False,
    parallel: int = 1,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchCheckpoint:
    """Run every unfinished unit of ``plan`` with up to ``parallel`` units at once; returns the final checkpoint.

    ``context`` supplies the store, the validator and tracing; each unit gets its own chat model from
    ``llm_settings[run_id]`` (provider, model, temperature and key, resolved by the caller). A batch
    that has a checkpoint already runs only with ``resume``; finished units are skipped and unfinished
    ones re-run under their run ids, which reuses every seed they committed. The first unit error stops
    the batch: units not started yet stay pending, units already running finish, then the error is
    raised (the failed unit is marked ``error`` and runs again on the next resume).
    """
    if not 1 <= parallel <= 64:
        raise ConfigError(f"--parallel must be from 1 to 64 runs at once, got {parallel}")
    missing = [unit.run_id for unit in plan.units if unit.run_id not in llm_settings]
    if missing:
        raise ConfigError(f"no model settings for run(s) {', '.join(missing[:5])}")
    existing = read_checkpoint(context.store, plan.name)
    if existing is not None and not resume:
        raise ConfigError(
            f"batch {plan.name!r} already ran ({existing.finished_units}/{len(existing.units)} runs finished, "
            f"checkpoint {context.store.url_for(batch_checkpoint_key(plan.name))}); pass --resume to continue it, "
            "or rename the batch to start a new one"
        )
    writer = _CheckpointWriter(context.store, reconcile(plan, existing))
    writer.write()
    pending = [index for index, progress in enumerate(writer.checkpoint.units) if not progress.finished]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="batch-unit") as executor:
        futures: list[Future[None]] = [
            executor.submit(_run_unit, context, plan, writer, index, llm_settings, on_event) for index in pending
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failures = [future for future in done if future.exception() is not None]
        if failures:
            for future in futures:
                future.cancel()
            error = failures[0].exception()
            assert error is not None
            raise error
    return writer.checkpoint


def _run_unit(
    context: GenerationContext,
    plan: BatchPlan,
    writer: _CheckpointWriter,
    index: int,
    llm_settings: Mapping[str, LlmSettings],
    on_event: Callable[[BatchEvent], None] | None,
) -> None:
    """Run one unit as a generation run, checkpointing after every seed; a failed unit is marked ``error``."""
    from scenario_lib.agent.providers import make_chat_model
    from scenario_lib.runs.driver import run_generation
    from scenario_lib.runs.generation import GenerationJob

    unit = writer.checkpoint.units[index].unit
    llm = llm_settings[unit.run_id]
    job = GenerationJob(
        run_id=unit.run_id,
        tier=unit.tier,
        count=unit.count,
        prompt=unit.prompt,
        base_seed=unit.base_seed,
        headroom=unit.headroom,
    )
    unit_context = dataclasses.replace(
        context,
        chat_model=make_chat_model(llm),
        provider=llm.provider.value,
        model=unit.model,
        max_attempts=llm.max_attempts,
    )
    started = time.perf_counter()
    progress = writer.update(index, state=UnitState.RUNNING, started_at=_now(), error="")
    if on_event is not None:
        on_event(BatchEvent(BatchEventKind.UNIT_STARTED, progress))

    def record(outcome: SeedOutcome, schedule: Any) -> None:
        passed = schedule.passed
        progress = writer.update(index, passed=passed, failed=len(schedule.finished) - passed)
        if on_event is not None:
            on_event(BatchEvent(BatchEventKind.SEED_FINISHED, progress, outcome=outcome))

    try:
        summary = run_generation(
            unit_context,
            job,
            max_concurrency=unit.max_concurrency,
            on_outcome=record,
            resume_with=f"the batch's --resume (`scenarios batch run {plan.source or '<file>'} --resume`)",
        )
    except Exception as err:
        writer.update(index, state=UnitState.ERROR, error=f"{type(err).__name__}: {err}"[:2000])
        raise
    progress = writer.update(
        index,
        state=UnitState.DONE if summary.complete else UnitState.SHORT,
        passed=summary.passed,
        failed=summary.failed,
        finished_at=_now(),
        duration_s=round(time.perf_counter() - started, 3),
    )
    if on_event is not None:
        on_event(BatchEvent(BatchEventKind.UNIT_FINISHED, progress, summary=summary))


def iter_batch_runs(store: DatasetStore, name: str) -> Iterator[tuple[BatchUnit, RunSummary]]:
    """Each finished or started unit of batch ``name`` with its stored run record (units without one are skipped)."""
    from scenario_lib.runs.generation import read_run_record

    checkpoint = read_checkpoint(store, name)
    if checkpoint is None:
        raise ConfigError(f"no batch named {name!r} in {store.url_for(BATCHES_PREFIX)}")
    for progress in checkpoint.units:
        try:
            yield progress.unit, read_run_record(store, progress.unit.run_id)
        except ObjectNotFoundError:
            continue


__all__ = [
    "BatchCheckpoint",
    "BatchEvent",
    "BatchEventKind",
    "UnitProgress",
    "UnitState",
    "iter_batch_runs",
    "list_checkpoints",
    "read_checkpoint",
    "reconcile",
    "run_batch",
]
