"""The trusted stages in worker processes, so a host's seeds are checked on every core at once.

The sandbox builds a script; what it returns (meshes and a Scenario as data) then passes the trusted
stages: mesh checks, collision hulls, MJCF compile, passive simulation, task and solvability. Those are
CPU-bound Python and C; in the host process they share one GIL with every seed in flight (and, in a
Prefect flow run, with the orchestration), so a two-core machine did the work of one. A `CheckPool`
runs them in ``workers`` spawned processes that never run untrusted code: they receive the host's own
`BuildOutcome` and return a `SeedValidation`, both pickled between trusted processes (the sandbox's
output is parsed, never unpickled, before it gets here).

A worker that dies (the OOM killer, a crash in a native library on some mesh) breaks the executor:
the job's caller gets a `CheckWorkerError` naming the job and the fix, which the run drivers treat as
an infrastructure error (the seed is retried, not failed), and the next job starts a fresh executor.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from scenario_lib.closing import Closing
from scenario_lib.errors import ConfigError, SandboxError

ResultT = TypeVar("ResultT")
MAX_WORKERS = 64
PARENT_POLL_S = 0.5


class CheckWorkerError(SandboxError):
    """A check worker process died while it held a job; the job did not finish."""


def default_check_workers() -> int:
    """One worker per CPU the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the host is gone: a killed host leaves no worker behind (holding its pipes open)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def can_start_workers() -> bool:
    """False in a daemonic process (a Dask or multiprocessing worker), which may not have children;
    there the checks run in the calling thread, under that process's own GIL."""
    return not multiprocessing.current_process().daemon


def _start_worker() -> None:
    """Watch the host, then import what every check needs so the first job does not pay for it."""
    # Not PR_SET_PDEATHSIG: it fires when the *thread* that spawned us ends, and any seed thread may.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="parent-watch").start()
    import scenario_lib.scene.collision  # noqa: F401
    import scenario_lib.scene.geometry  # noqa: F401
    import scenario_lib.scene.mjcf  # noqa: F401
    import scenario_lib.scene.render  # noqa: F401
    import scenario_lib.scene.simulation  # noqa: F401
    import scenario_lib.scene.task  # noqa: F401
    import scenario_lib.validation.solvability  # noqa: F401


def _worker_pid() -> int:
    time.sleep(0.2)  # long enough that each of a warm-up's jobs lands on a worker of its own
    return os.getpid()


class CheckPool(Closing):
    """``workers`` long-lived processes that run picklable check functions; thread-safe."""

    def __init__(self, workers: int | None = None) -> None:
        count = default_check_workers() if workers is None else workers
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WORKERS:
            raise ConfigError(f"check workers must be an integer in 1..{MAX_WORKERS}, got {workers!r}")
        self.workers = count
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise SandboxError("the check pool is closed; open a new validator to check more builds")
            if self._executor is None:
                # spawn, not fork: the host has threads (seed workers, Prefect's) that a fork would copy mid-lock.
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                )
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        """Drop a broken executor so that the next job starts a fresh one."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def start(self) -> None:
        """Start every worker in the background (returns at once); `warm_up` waits for them."""
        executor = self._current()
        for _ in range(self.workers):
            executor.submit(os.getpid)  # each submit spawns a worker while none is idle; no pause needed

    def warm_up(self) -> list[int]:
        """Start every worker and import the checks' libraries in it; returns the workers' process ids."""
        futures = [self._current().submit(_worker_pid) for _ in range(self.workers)]
        return sorted({future.result() for future in futures})

    def map(self, function: Callable[..., ResultT], jobs: Sequence[tuple[Any, ...]], *, what: str) -> list[ResultT]:
        """``function(*job)`` for every job, spread over the workers, in the order of ``jobs``.

        ``what`` names the jobs in the error raised when a worker dies (e.g. "the checks of seed 3").
        Exceptions raised by ``function`` itself propagate unchanged.
        """
        executor = self._current()
        try:
            futures: list[Future[ResultT]] = [executor.submit(function, *job) for job in jobs]
            return [future.result() for future in futures]
        except BrokenProcessPool as err:
            self._discard(executor)
            raise CheckWorkerError(
                f"a check worker process died during {what} (killed by the OOM killer or a crash in a native "
                "library); nothing of it was stored: retry the seed, and if it dies again lower "
                "SCENARIOS_VALIDATION__CHECK_WORKERS or raise the machine's memory"
            ) from err

    def close(self) -> None:
        """Stop the workers (idempotent); jobs not yet started are cancelled."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["CheckPool", "CheckWorkerError", "can_start_workers", "default_check_workers"]
