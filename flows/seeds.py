"""The seed task of the ``generate`` flow, runnable on a thread of the flow-run process or on a Dask worker.

A `GenerationContext` holds a sandbox pool (live child processes), a chat model and a tracer provider:
it cannot be pickled. On the thread runner the flow hands its own context to each task. On Dask the
flow hands a `WorkerContext` instead (the settings, which pickle), and each Dask worker process opens
one context from it the first time it runs a seed and keeps it for the life of the process, so the
sandbox warm-up (~3 s of CPU per sandbox worker) is paid once per Dask worker, not once per seed.

This module lives apart from ``flows/generate.py`` because Prefect loads a deployment's entrypoint as a
top-level module named after the file (``generate``), which a Dask worker cannot import; the task must
live in a module importable as ``flows.seeds`` everywhere.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import concurrency
from prefect.states import State

from scenario_lib.config import Settings
from scenario_lib.errors import ConfigError, SandboxError, StoreError
from scenario_lib.runs.generation import GenerationContext, GenerationJob, generate_seed, open_generation_context

from flows.results import SeedRun
from flows.slots import HeldSlots

GENERATION_LIMIT = "scenario-generation"
GENERATION_SLOTS = 4


@dataclass(frozen=True)
class WorkerContext:
    """What a Dask worker needs to open its own `GenerationContext`: the flow run's settings."""

    settings: Settings
    trace_label: str


_contexts: dict[str, GenerationContext] = {}
_contexts_lock = threading.Lock()
_exit_stack = ExitStack()


def _close_worker_contexts() -> None:
    # Closes the sandbox pools and stores the spooled spans when the Dask worker process exits.
    with _contexts_lock:
        _contexts.clear()
        _exit_stack.close()


def resolve_context(context: GenerationContext | WorkerContext) -> GenerationContext:
    """The context itself, or this process's context for a `WorkerContext` (opened at first use, then reused)."""
    if isinstance(context, GenerationContext):
        return context
    key = context.settings.model_dump_json() + context.trace_label
    with _contexts_lock:
        if key not in _contexts:
            if not _contexts:
                atexit.register(_close_worker_contexts)
            _contexts[key] = _exit_stack.enter_context(
                open_generation_context(context.settings, trace_label=f"{context.trace_label}-dask")
            )
        return _contexts[key]


def is_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a seed only for errors a retry can fix: the store or the sandbox failing, I/O errors."""
    error = state.data if isinstance(state.data, BaseException) else None
    if isinstance(error, ConfigError):
        return False
    return isinstance(error, StoreError | SandboxError | OSError | TimeoutError)


@task(
    name="generate-seed",
    task_run_name="seed-{seed}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def generate_seed_task(
    context: GenerationContext | WorkerContext, job: GenerationJob, seed: int, slots: HeldSlots | None = None
) -> SeedRun:
    """Generate one seed while holding one slot of the global generation limit: one of the flow run's
    held ``slots`` (seeds on the flow-run process's threads), or a slot of its own (a Dask worker)."""
    resolved = resolve_context(context)  # outside the slot: a Dask worker's first seed opens its context
    with _generation_slot(slots):
        acquired = datetime.now(timezone.utc)
        outcome = generate_seed(resolved, job, seed)
        released = datetime.now(timezone.utc)
    return SeedRun(outcome=outcome, slot_acquired_at=acquired, slot_released_at=released)


@contextmanager
def _generation_slot(slots: HeldSlots | None) -> Iterator[None]:
    if slots is None:
        with concurrency(GENERATION_LIMIT, occupy=1, strict=True):
            yield
        return
    slot = slots.take()
    try:
        yield
    finally:
        slots.give_back(slot)


__all__ = ["GENERATION_LIMIT", "GENERATION_SLOTS", "WorkerContext", "generate_seed_task", "is_transient", "resolve_context"]
