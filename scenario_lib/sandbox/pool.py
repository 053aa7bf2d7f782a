"""Run untrusted scenario scripts in a warm pool of sandboxed worker processes.

Each worker is a long-lived Python process (``scenario_lib.sandbox.runner``) that has build123d already
imported and forks a short-lived child per job (one script's series of builds), started by the command of
`scenario_lib.sandbox.command` (bubblewrap, or resource limits only) and spoken to in the frames of
`scenario_lib.sandbox.protocol`. What comes back is untrusted data, turned into a `BuildOutcome` by
`scenario_lib.sandbox.outcome`. See ``docs/sandbox.md``.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenario_lib.closing import Closing
from scenario_lib.config import SandboxMode
from scenario_lib.errors import ConfigError, SandboxError
from scenario_lib.sandbox.command import (
    HUGE_PAGES_AFTER_JOBS,
    PACKAGE_DIR,
    SANDBOX_TMP,
    SANDBOX_UID,
    bwrap_command,
    python_command,
    resolve_mode,
    worker_env,
)
from scenario_lib.sandbox.limits import SandboxLimits
from scenario_lib.sandbox.outcome import BuildOutcome, outcome_from_worker
from scenario_lib.sandbox.protocol import MAX_HEADER_BYTES, BuildFailure, Deadline, PipeClosed, read_frame, write_frame

MAX_SCRIPT_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class BuildRequest:
    """One call of ``build(seed, scale)`` and how to tessellate its parts; validated on construction."""

    seed: int
    scale: tuple[float, float, float]
    stl_tolerance_mm: float = 0.05
    stl_angular_tolerance_rad: float = 0.2
    # False: only build and check the contract (no part checks, no meshes), e.g. to read declared limits.
    check_parts: bool = True

    def to_job(self) -> dict[str, Any]:
        """The build's entry in a worker job (see `scenario_lib.sandbox.runner`)."""
        return {
            "seed": int(self.seed),
            "scale": [float(value) for value in self.scale],
            "stl_tolerance_mm": float(self.stl_tolerance_mm),
            "stl_angular_tolerance_rad": float(self.stl_angular_tolerance_rad),
            "check_parts": bool(self.check_parts),
        }

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"build seed must be an integer, got {self.seed!r}")
        scale = tuple(self.scale) if isinstance(self.scale, (tuple, list)) else ()
        if len(scale) != 3 or not all(_is_positive_number(value) for value in scale):
            raise ConfigError(
                "build scale must be 3 finite numbers > 0 (x, y, z factors such as (1.0, 1.0, 1.0)), "
                f"got {self.scale!r}"
            )
        for name in ("stl_tolerance_mm", "stl_angular_tolerance_rad"):
            if not _is_positive_number(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number > 0 (e.g. 0.05), got {getattr(self, name)!r}")


def _is_positive_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an int too large for a float
        return False


# ---------------------------------------------------------------------------------------------------
# Workers


class _WorkerLost(Exception):
    """The worker process died or spoke nonsense."""


class _Worker:
    """One sandboxed worker process as the host sees it."""

    def __init__(
        self, mode: SandboxMode, limits: SandboxLimits, hidden: Sequence[str | Path], huge_pages_after_jobs: int
    ) -> None:
        self.mode = mode
        self.limits = limits
        self.hidden = hidden
        self.huge_pages_after_jobs = huge_pages_after_jobs
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.startup_s = 0.0
        self.threads: object = None  # threads in the worker when it reported ready (should be 1)
        self._spawned_at = 0.0
        self._stderr: Any = None
        self._scratch: str | None = None

    def spawn(self) -> None:
        """Start the process (returns at once; `wait_ready` waits for its build123d import)."""
        self._stderr = tempfile.TemporaryFile(prefix="sandbox-worker-stderr-")
        if self.mode is SandboxMode.BWRAP:
            worker = python_command(SANDBOX_TMP, own_pid_namespace=True, huge_pages_after_jobs=self.huge_pages_after_jobs)
            command = bwrap_command(worker, self.limits, self.hidden)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        else:
            self._scratch = tempfile.mkdtemp(prefix="scenario-sandbox-")
            command = python_command(self._scratch, own_pid_namespace=False, huge_pages_after_jobs=self.huge_pages_after_jobs)
            env = worker_env(self._scratch)
        self._spawned_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=self._scratch or "/",
            close_fds=True,
            start_new_session=True,
        )
        self.ready = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return str(self._stderr.read().decode("utf-8", "replace"))

    def wait_ready(self) -> None:
        """Wait for the worker's ready frame; raises `SandboxError` when it does not come."""
        if self.ready:
            return
        assert self.process is not None and self.process.stdout is not None
        deadline = self._spawned_at + self.limits.startup_s
        try:
            header, _ = read_frame(self.process.stdout.fileno(), deadline, max_header_bytes=1 << 16)
        except (PipeClosed, Deadline, ValueError) as err:
            self.kill()
            raise SandboxError(
                f"a sandbox worker ({self.mode.value}) did not start within {self.limits.startup_s} s "
                f"({type(err).__name__}); its stderr: {self.stderr_tail()!r}. It runs `{sys.executable}` as "
                f"uid {SANDBOX_UID} and imports build123d and scenario_lib from {str(PACKAGE_DIR)!r}: check "
                "that this user can read both (`scenarios config check`), or raise startup_s on a slow machine"
            ) from err
        if header.get("op") != "ready":
            self.kill()
            raise SandboxError(f"a sandbox worker sent {header!r:.200} instead of its ready message")
        self.startup_s = time.monotonic() - self._spawned_at
        self.threads = header.get("threads")
        self.ready = True

    def run(self, job: Mapping[str, Any], answers: int) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Send one job and yield its ``answers`` results as they come, each within the wall-clock limit;
        raises _WorkerLost or Deadline."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        try:
            write_frame(self.process.stdin.fileno(), job)
        except (BrokenPipeError, ValueError) as err:
            raise _WorkerLost(str(err)) from err
        max_payload = self.limits.max_output_mb * 1024 * 1024 + MAX_HEADER_BYTES
        for _ in range(answers):
            deadline = time.monotonic() + self.limits.wall_s
            try:
                header, payload = read_frame(self.process.stdout.fileno(), deadline, max_payload_bytes=max_payload)
            except (PipeClosed, ValueError) as err:
                raise _WorkerLost(str(err)) from err
            if header.get("op") != "done":
                raise _WorkerLost(f"unexpected message {header!r:.200}")
            yield header, payload

    def kill(self) -> None:
        """Kill the worker and everything it started, and reap it."""
        process = self.process
        if process is None:
            return
        if self.mode is SandboxMode.RLIMITS:
            # No pid namespace: hunt down the worker's descendants (it is their subreaper) first.
            _kill_tree(process.pid)
        # BWRAP: killing bwrap kills the namespace's init (--die-with-parent), and with it every
        # process in the namespace, whatever session or process group they moved to.
        if process.returncode is None:
            # Not reaped yet, so its pid (= its process group, start_new_session) is still ours.
            for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._close_pipes()

    def close(self) -> None:
        """Ask the worker to exit (EOF on its input), then kill it if it does not."""
        process = self.process
        if process is None:
            return
        # A worker still importing build123d would only notice EOF seconds later: kill it instead.
        if self.ready and process.stdin is not None:
            try:
                process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self._stderr is not None:
            self._stderr.close()
        self.process = None

    def _close_pipes(self) -> None:
        assert self.process is not None
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def _children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after the last ")" are fixed.
        fields = stat[stat.rfind(b")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _kill_tree(root: int) -> None:
    """SIGKILL every descendant of ``root`` (repeated: a fork bomb keeps forking while we look)."""
    for _ in range(50):
        tree = _children_by_parent()
        found: list[int] = []
        pending = list(tree.get(root, []))
        while pending:
            pid = pending.pop()
            found.append(pid)
            pending.extend(tree.get(pid, []))
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------
# The pool


class SandboxPool(Closing):
    """A warm pool of sandboxed workers that run ``build(seed, scale)`` of untrusted scripts.

    Workers start lazily (all of them, in parallel, at the first build) and are replaced when they die
    or overrun the wall-clock limit. Thread-safe: each call borrows one idle worker.
    """

    def __init__(
        self,
        workers: int = 2,
        limits: SandboxLimits = SandboxLimits(),
        mode: SandboxMode = SandboxMode.AUTO,
        *,
        hidden_paths: Sequence[str | Path] = (),
        huge_pages_after_jobs: int = HUGE_PAGES_AFTER_JOBS,
    ) -> None:
        """``hidden_paths``: more folders to hide behind an empty tmpfs (BWRAP), besides home folders;
        ``huge_pages_after_jobs``: when a worker backs its memory with huge pages (0: once it is ready; a
        long-lived pool's choice, see `HUGE_PAGES_AFTER_JOBS`)."""
        if huge_pages_after_jobs < 0:
            raise SandboxError(f"huge_pages_after_jobs must be 0 or more, got {huge_pages_after_jobs}")
        if workers < 1:
            raise SandboxError(f"a sandbox pool needs at least 1 worker, got {workers}")
        self.limits = limits
        self.mode = resolve_mode(SandboxMode(mode), limits, hidden_paths)
        self._workers = [_Worker(self.mode, limits, tuple(hidden_paths), huge_pages_after_jobs) for _ in range(workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        # Every worker is started from this one long-lived thread. bubblewrap's --die-with-parent is a
        # PR_SET_PDEATHSIG, which fires when the *thread* that started it exits: a worker started from a
        # short-lived thread (a map_builds or orchestrator thread) would be killed as soon as it ended.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")

    @property
    def workers(self) -> int:
        return len(self._workers)

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.close()
        self._spawner.shutdown(wait=False)

    def _spawn(self, worker: _Worker) -> None:
        self._spawner.submit(worker.spawn).result()

    def start(self) -> None:
        """Start every worker now, without waiting for them (they import build123d in the background)."""
        self._start_all()

    def warm_up(self) -> list[float]:
        """Start every worker now and wait until all are ready; returns each one's start-up time (s)."""
        self._start_all()
        for worker in self._workers:
            worker.wait_ready()
        return [worker.startup_s for worker in self._workers]

    def _start_all(self) -> None:
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox pool is closed; create a new SandboxPool")
            if not self._started:
                self._started = True
                for worker in self._workers:
                    self._spawn(worker)

    def run_build(self, script_source: str, request: BuildRequest) -> BuildOutcome:
        """Run ``build(request.seed, request.scale)`` of ``script_source`` in a sandboxed child.

        Every failure of the script becomes a failed `BuildOutcome`; only a sandbox that cannot start
        raises `SandboxError`.
        """
        return self.run_series(script_source, [request])[0]

    def run_series(self, script_source: str, requests: Sequence[BuildRequest]) -> list[BuildOutcome]:
        """`run_build` for each request, one after another on one worker (one child while none fails hard)."""
        source_bytes = len(script_source.encode("utf-8", "surrogatepass"))
        if source_bytes > MAX_SCRIPT_BYTES:
            too_big = BuildOutcome.failed(
                BuildFailure.IMPORT,
                f"the script is {source_bytes} bytes, over the {MAX_SCRIPT_BYTES} byte limit; keep scripts small",
            )
            return [too_big for _ in requests]
        self._start_all()
        worker = self._idle.get()
        try:
            outcomes: list[BuildOutcome] = []
            while len(outcomes) < len(requests):
                outcomes += self._run_on(worker, script_source, requests[len(outcomes) :])
            return outcomes
        finally:
            self._idle.put(worker)

    def map_builds(self, script_source: str, requests: Sequence[BuildRequest]) -> list[BuildOutcome]:
        """`run_build` for each request, in one series per worker in parallel; results in request order.

        Each series is a contiguous run of ``requests``, so the first request is the first build of a
        fresh child, exactly as `run_build` would make it.
        """
        if not requests:
            return []
        self._start_all()
        parts = min(self.workers, len(requests))
        bounds = [len(requests) * part // parts for part in range(parts + 1)]
        series = [requests[low:high] for low, high in zip(bounds, bounds[1:])]
        with ThreadPoolExecutor(max_workers=parts) as executor:
            answers = list(executor.map(lambda part: self.run_series(script_source, part), series))
        return [outcome for part in answers for outcome in part]

    def _run_on(self, worker: _Worker, script_source: str, requests: Sequence[BuildRequest]) -> list[BuildOutcome]:
        """Run ``requests`` as one job on ``worker``: their outcomes, up to and including the first that
        ended the worker (a timeout or a lost worker; it is then replaced)."""
        with self._lock:
            if self._closed:
                raise SandboxError("the sandbox pool is closed; create a new SandboxPool")
            if not worker.alive():
                worker.kill()
                self._spawn(worker)
        worker.wait_ready()
        job = {
            "op": "build",
            "source": script_source,
            "builds": [request.to_job() for request in requests],
            "limits": {
                "memory_mb": self.limits.memory_mb,
                "cpu_s": self.limits.cpu_s,
                "max_output_mb": self.limits.max_output_mb,
                "max_processes": self.limits.max_processes,
                "max_open_files": self.limits.max_open_files,
            },
        }
        outcomes: list[BuildOutcome] = []
        started = time.monotonic()
        try:
            for done, result in worker.run(job, len(requests)):
                request = requests[len(outcomes)]
                outcomes.append(
                    outcome_from_worker(done, result, self.limits, time.monotonic() - started, meshes=request.check_parts)
                )
                started = time.monotonic()
        except Deadline:
            self._replace(worker)
            request = requests[len(outcomes)]
            outcomes.append(
                BuildOutcome.failed(
                    BuildFailure.TIMEOUT,
                    f"build(seed={request.seed}, scale={request.scale}) did not finish within the wall-clock limit "
                    f"of {self.limits.wall_s} s (sleeping, blocked or too slow); make it faster or raise "
                    "SCENARIOS_SANDBOX__WALL_LIMIT_S",
                    duration_s=time.monotonic() - started,
                )
            )
        except _WorkerLost as err:
            self._replace(worker)
            request = requests[len(outcomes)]
            outcomes.append(
                BuildOutcome.failed(
                    BuildFailure.CRASH,
                    f"the sandbox worker died while running build(seed={request.seed}) "
                    f"({str(err) or 'its pipe closed'}): the "
                    "script killed its parent process or every process it could reach; a script must only return "
                    "a Scenario",
                    duration_s=time.monotonic() - started,
                )
            )
        return outcomes

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor at once, so it warms up while others work."""
        worker.kill()
        with self._lock:
            if not self._closed:
                self._spawn(worker)

