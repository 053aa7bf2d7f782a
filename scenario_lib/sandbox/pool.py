"""Run untrusted scenario scripts in a warm pool of sandboxed worker processes.

Each worker is a long-lived Python process (``scenario_lib.sandbox.runner``) that has build123d already
imported and forks one short-lived child per job. In `SandboxMode.BWRAP` the worker lives in a bubblewrap
sandbox (no network, its own pid/ipc/uts namespaces, read-only root, home directories hidden, a
size-capped private ``/tmp``) as uid 65534 without capabilities; the job child adds resource limits
(address space, CPU, file size, processes, open files). `SandboxMode.RLIMITS` keeps only the resource limits.

What comes back is untrusted data: a framed JSON header plus raw STL bytes, parsed here with size caps
and re-validated (the Scenario by pydantic, the meshes by `scenario_lib.scene.geometry.check_mesh` in the
geometry stage). Nothing from the sandbox is ever unpickled. See ``docs/sandbox.md``.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from scenario_lib.config import SandboxMode
from scenario_lib.errors import ConfigError, GeometryError, SandboxError
from scenario_lib.scene.geometry import PartCheck
from scenario_lib.report import Metric, Stage, StageResult
from scenario_lib.sandbox.runner import (
    EXIT_RESULT_UNWRITABLE,
    MAX_HEADER_BYTES,
    OUTPUT_TAIL_BYTES,
    BuildFailure,
    Deadline,
    PipeClosed,
    decode_frame,
    read_frame,
    write_frame,
)

# uid/gid of the worker inside the bubblewrap sandbox ("nobody"): dropping root is what makes
# RLIMIT_NPROC apply at all (root ignores it) and takes away every capability.
SANDBOX_UID = 65534
# Where the scratch tmpfs is mounted inside the sandbox, and its job folders.
SANDBOX_TMP = "/tmp"
MAX_SCRIPT_BYTES = 2 * 1024 * 1024
_RUNNER_MODULE = "scenario_lib.sandbox.runner"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the scenario_lib package (this module is in sandbox/)
_REPO_ROOT = _PACKAGE_DIR.parent
# Paths hidden behind an empty tmpfs in the sandbox: home directories (credentials, SSH keys, cloud
# configs), runtime sockets (/run: a unix socket on a read-only mount can still be connected to) and
# shared temporary folders of the host.
_HIDDEN_BY_DEFAULT = ("/root", "/home", "/run", "/var/tmp", "/mnt", "/media", "/srv")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one job (the child a worker forks per build)."""

    # RLIMIT_AS of the job child. The worker with build123d preloaded is already ~950 MB virtual.
    memory_mb: int = 2048
    cpu_s: int = 60  # RLIMIT_CPU (soft; the hard limit is one second later)
    wall_s: float = 120.0  # enforced by the host: on expiry the worker's whole sandbox is killed
    max_output_mb: int = 256  # RLIMIT_FSIZE of the job; the sandbox's /tmp tmpfs holds 2x this + 32 MB
    max_processes: int = 64  # RLIMIT_NPROC, counted per uid (threads included) across the machine
    max_open_files: int = 256  # RLIMIT_NOFILE
    startup_s: float = 120.0  # how long a worker may take to import build123d and report ready

    def __post_init__(self) -> None:
        if self.memory_mb < 256 or self.cpu_s < 1 or self.wall_s <= 0 or self.max_output_mb < 1:
            raise SandboxError(
                f"invalid sandbox limits {self}: need memory_mb >= 256, cpu_s >= 1, wall_s > 0, max_output_mb >= 1"
            )


@dataclass(frozen=True)
class BuildRequest:
    """One call of ``build(seed, scale)`` and how to tessellate its parts; validated on construction."""

    seed: int
    scale: tuple[float, float, float]
    stl_tolerance_mm: float = 0.05
    stl_angular_tolerance_rad: float = 0.2

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


@dataclass(frozen=True)
class BuildOutcome:
    """What one sandboxed build produced: a scenario with meshes and part checks, or a failure."""

    ok: bool
    failure: BuildFailure | None
    message: str
    scenario_json: str | None
    meshes: dict[str, bytes] = field(default_factory=dict)
    part_checks: dict[str, PartCheck] = field(default_factory=dict)
    output_tail: str = ""
    duration_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)

    def code_stage(self) -> StageResult:
        """The CODE stage: the script imported, honoured the contract and returned a Scenario."""
        metrics: dict[str, Metric] = {"duration_s": round(self.duration_s, 4)}
        metrics.update({key: round(value, 4) for key, value in self.timings_s.items()})
        if self.ok:
            metrics["bodies"] = len(self.meshes)
            return StageResult.passing(Stage.CODE, metrics, self.duration_s)
        kind = self.failure.value if self.failure else "unknown"
        metrics["failure"] = kind
        message = f"{kind}: {self.message}"
        tail = self.output_tail.strip()
        if tail and self.failure is not BuildFailure.OUTPUT_LIMIT:
            message += f"\n--- last output of the script ---\n{tail[-1500:]}"
        return StageResult.failing(Stage.CODE, message, metrics, self.duration_s)

    @classmethod
    def failed(
        cls, failure: BuildFailure, message: str, *, output_tail: str = "", duration_s: float = 0.0
    ) -> BuildOutcome:
        return cls(
            ok=False,
            failure=failure,
            message=message,
            scenario_json=None,
            output_tail=output_tail,
            duration_s=duration_s,
        )


# ---------------------------------------------------------------------------------------------------
# Commands


def worker_env(home: str) -> dict[str, str]:
    """The whole environment of a worker: nothing from the parent (no keys, tokens or proxies)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        # Set before anything forks: the job children are forks and must not start BLAS thread pools.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # pyarrow (imported by build123d) would start a jemalloc background thread; a worker that
        # forks must stay single-threaded.
        "JE_ARROW_MALLOC_CONF": "background_thread:false",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _python_command(scratch: str, own_pid_namespace: bool) -> list[str]:
    # -I: ignore PYTHON* variables, the user site and the current folder; the repository is put on
    # sys.path explicitly so the worker imports this very scenario_lib.
    boot = f"import sys; sys.path.insert(0, {str(_REPO_ROOT)!r}); from {_RUNNER_MODULE} import main; main()"
    command = [sys.executable, "-I", "-c", boot, "--scratch", scratch, "--clean-scratch"]
    return command + (["--own-pid-namespace"] if own_pid_namespace else [])


def _hidden_paths(extra: Sequence[str | Path]) -> list[str]:
    import pwd

    candidates = [*_HIDDEN_BY_DEFAULT, pwd.getpwuid(os.getuid()).pw_dir, *(str(path) for path in extra)]
    hidden: list[str] = []
    for candidate in candidates:
        path = os.path.realpath(candidate)
        # A symlink (e.g. /var/run -> /run) is covered by its target; "/" cannot be hidden.
        if path != "/" and os.path.isdir(path) and not os.path.islink(candidate) and path not in hidden:
            hidden.append(path)
    return sorted(hidden, key=len)


def _needed_paths() -> list[str]:
    """Folders the worker must read (python, the venv, this package), none inside another."""
    candidates = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, str(_PACKAGE_DIR))}
    candidates.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(p for p in candidates if not any(_is_below(p, other) for other in candidates if other != p))


def _is_below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _others_may(path: str, bits: int) -> bool:
    try:
        return os.stat(path).st_mode & bits == bits
    except OSError:
        return False


def _closed_ancestor(path: str) -> str | None:
    """The highest folder above ``path`` that the sandbox user cannot traverse (no x bit for others)."""
    for ancestor in reversed(Path(path).parents):
        if str(ancestor) != "/" and not _others_may(str(ancestor), stat.S_IXOTH):
            return str(ancestor)
    return None


def unreadable_sandbox_path() -> tuple[str, str] | None:
    """``(path, needed folder)`` of something the sandbox user cannot read, or None when all is readable.

    Looks at each needed folder, the entries of the site-packages folders and every file of this
    package: enough to catch a venv or a clone made under umask 077 (everything in it is then 0600/0700).
    """
    needed = _needed_paths()
    for folder in needed:
        candidates = [folder]
        if _is_below(folder, str(_PACKAGE_DIR)):
            candidates += [str(p) for p in sorted(_PACKAGE_DIR.rglob("*")) if "__pycache__" not in p.parts]
        for site_packages in Path(folder).glob("lib/python*/site-packages"):
            candidates += [str(site_packages), *(str(p) for p in sorted(site_packages.iterdir()))]
        for candidate in candidates:
            bits = stat.S_IROTH | (stat.S_IXOTH if os.path.isdir(candidate) else 0)
            if not _others_may(candidate, bits):
                return candidate, folder
    return None


def bwrap_command(
    inner: Sequence[str], limits: SandboxLimits, hidden: Sequence[str | Path] = ()
) -> list[str]:
    """The bubblewrap + setpriv command line that runs ``inner`` as an unprivileged, isolated process."""
    needed = _needed_paths()
    hidden_paths = _hidden_paths(hidden)
    # A folder above python, the venv or the package that uid 65534 cannot enter (a home folder, a
    # `mktemp -d` folder, a clone under umask 077) is hidden like a home folder; what is needed from
    # inside it is bound back below.
    for path in needed:
        closed = _closed_ancestor(path)
        if closed and not any(_is_below(closed, h) for h in [*hidden_paths, SANDBOX_TMP]):
            hidden_paths.append(closed)
    hidden_paths = sorted(set(hidden_paths), key=len)
    command = [
        "bwrap",
        # Not --unshare-user/--unshare-all: inside a user namespace setpriv could not change uid.
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--ro-bind", "/", "/",
    ]  # fmt: skip
    for path in hidden_paths:
        command += ["--tmpfs", path]
    # Room for one file at the size limit plus the job's result (meshes can be as large again).
    size = str((2 * limits.max_output_mb + 32) * 1024 * 1024)
    command += ["--perms", "01777", "--size", size, "--tmpfs", SANDBOX_TMP, "--dev", "/dev", "--proc", "/proc"]
    # Mounted after the tmpfs layers: python, the venv and this package may live under a hidden folder
    # or under /tmp itself (a CI checkout in /tmp/...). bubblewrap makes the folders between the tmpfs
    # and the bind with the modes of the originals (0700 for a `mktemp -d` folder), so they are
    # opened up to 0755: they hold nothing but the way to the bind.
    for path in needed:
        covers = [h for h in [*hidden_paths, SANDBOX_TMP] if _is_below(path, h)]
        if not covers:
            continue
        cover = min(covers, key=len)
        command += ["--ro-bind", path, path]
        for between in Path(path).parents:
            if not _is_below(str(between), cover) or str(between) == cover:
                break
            command += ["--chmod", "0755", str(between)]
    for key, value in worker_env(SANDBOX_TMP).items():
        command += ["--setenv", key, value]
    command += ["--hostname", "sandbox", "--chdir", SANDBOX_TMP, "--"]
    command += [
        "setpriv",
        f"--reuid={SANDBOX_UID}",
        f"--regid={SANDBOX_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]
    return command + list(inner)


@cache
def _probe_bwrap(command: tuple[str, ...]) -> str | None:
    """None when the sandbox command runs ``true`` here, else why not."""
    if shutil.which("bwrap") is None or shutil.which("setpriv") is None:
        return "bwrap or setpriv is not installed"
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{type(err).__name__}: {err}"
    if done.returncode != 0:
        return f"exit status {done.returncode}: {done.stderr.decode('utf-8', 'replace').strip()[-500:]}"
    return None


def resolve_mode(
    mode: SandboxMode, limits: SandboxLimits = SandboxLimits(), hidden: Sequence[str | Path] = ()
) -> SandboxMode:
    """BWRAP or RLIMITS; AUTO becomes BWRAP when bubblewrap works here. Raises `SandboxError` otherwise."""
    if mode is SandboxMode.RLIMITS:
        return mode
    unreadable = unreadable_sandbox_path()
    if unreadable is not None:
        path, folder = unreadable
        raise SandboxError(
            f"the sandbox user (uid {SANDBOX_UID}) cannot read {path!r} (mode "
            f"{stat.filemode(os.stat(path).st_mode) if os.path.exists(path) else 'missing'}), and the "
            f"sandbox worker imports python, the venv and scenario_lib from {folder!r}. Make it readable "
            f"with `chmod -R o+rX '{folder}'` (`make install` does this for the venv and the package), or "
            "create the clone and the venv under umask 022"
        )
    reason = _probe_bwrap(tuple(bwrap_command(["true"], limits, tuple(str(p) for p in hidden))))
    if reason is None:
        return SandboxMode.BWRAP
    raise SandboxError(
        f"the bubblewrap sandbox does not work here ({reason}). Install bubblewrap and util-linux "
        "(`apt-get install bubblewrap util-linux`) and run as a user allowed to create namespaces, or set "
        "SCENARIOS_SANDBOX__MODE=rlimits to accept resource limits only (no network or file isolation: "
        "never for LLM-written scripts)"
    )


# ---------------------------------------------------------------------------------------------------
# Workers


class _WorkerLost(Exception):
    """The worker process died or spoke nonsense."""


class _Worker:
    """One sandboxed worker process as the host sees it."""

    def __init__(self, mode: SandboxMode, limits: SandboxLimits, hidden: Sequence[str | Path]) -> None:
        self.mode = mode
        self.limits = limits
        self.hidden = hidden
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
            command = bwrap_command(_python_command(SANDBOX_TMP, own_pid_namespace=True), self.limits, self.hidden)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        else:
            self._scratch = tempfile.mkdtemp(prefix="scenario-sandbox-")
            command = _python_command(self._scratch, own_pid_namespace=False)
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
                f"uid {SANDBOX_UID} and imports build123d and scenario_lib from {str(_PACKAGE_DIR)!r}: check "
                "that this user can read both (`scenarios config check`), or raise startup_s on a slow machine"
            ) from err
        if header.get("op") != "ready":
            self.kill()
            raise SandboxError(f"a sandbox worker sent {header!r:.200} instead of its ready message")
        self.startup_s = time.monotonic() - self._spawned_at
        self.threads = header.get("threads")
        self.ready = True

    def run(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Send one job and wait for its result; raises _WorkerLost or Deadline (wall limit)."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        deadline = time.monotonic() + self.limits.wall_s
        try:
            write_frame(self.process.stdin.fileno(), job)
            max_payload = self.limits.max_output_mb * 1024 * 1024 + MAX_HEADER_BYTES
            header, payload = read_frame(self.process.stdout.fileno(), deadline, max_payload_bytes=max_payload)
        except (PipeClosed, BrokenPipeError, ValueError) as err:
            raise _WorkerLost(str(err)) from err
        if header.get("op") != "done":
            raise _WorkerLost(f"unexpected message {header!r:.200}")
        return header, payload

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
# Turning what came back into a BuildOutcome


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _outcome_without_result(
    done: Mapping[str, Any], limits: SandboxLimits, tail: str, duration_s: float
) -> BuildOutcome:
    """Classify a job child that died or exited before writing its result."""
    exit_code = done.get("exit_code")
    number = done.get("signal")
    cpu_value = done.get("cpu_s")
    cpu_s = float(cpu_value) if isinstance(cpu_value, (int, float)) else 0.0

    def failed(failure: BuildFailure, message: str) -> BuildOutcome:
        return BuildOutcome.failed(failure, message, output_tail=tail, duration_s=duration_s)

    if isinstance(number, int) and number:
        name = _signal_name(number)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s >= limits.cpu_s - 0.5):
            return failed(
                BuildFailure.TIMEOUT,
                f"the script used {cpu_s:.1f} s of CPU, over the limit of {limits.cpu_s} s (killed by {name}); "
                "look for an endless loop or make the build cheaper",
            )
        if number == signal.SIGXFSZ:
            return failed(BuildFailure.OUTPUT_LIMIT, f"the script wrote a file over {limits.max_output_mb} MB")
        if "MemoryError" in tail or "bad_alloc" in tail:
            return failed(
                BuildFailure.MEMORY,
                f"the script ran out of memory (limit {limits.memory_mb} MB) and was killed by {name}",
            )
        return failed(
            BuildFailure.CRASH,
            f"the script's process was killed by {name} before build returned (a crash in native code such as "
            "OCCT, or the script killed itself); simplify the geometry operation on the last line it printed",
        )
    if exit_code == EXIT_RESULT_UNWRITABLE:
        return failed(
            BuildFailure.OUTPUT_LIMIT,
            f"the script filled its {limits.max_output_mb} MB of scratch space, so no result could be written",
        )
    return failed(
        BuildFailure.CRASH,
        f"the script's process exited with status {exit_code} before build returned a result "
        "(sys.exit/os._exit in the script?); return a Scenario from build instead of exiting",
    )


def _outcome_from_result(result: bytes, tail: str, duration_s: float) -> BuildOutcome:
    """Parse and check the job child's framed result (untrusted: it may be forged by the script)."""
    from pydantic import ValidationError

    from scenario_lib.contract import Scenario

    try:
        header, payload = decode_frame(result)
        failure_value = header.get("failure")
        message = header.get("message", "")
        timings = header.get("timings_s", {})
        if not isinstance(message, str) or not isinstance(timings, dict):
            raise ValueError("message or timings_s has the wrong type")
        timings_s = {str(k): float(v) for k, v in timings.items() if type(v) in (int, float) and math.isfinite(v)}
        if failure_value is not None:
            return BuildOutcome(
                ok=False,
                failure=BuildFailure(failure_value),
                message=message[:20_000],
                scenario_json=None,
                output_tail=tail,
                duration_s=duration_s,
                timings_s=timings_s,
            )
        scenario_json = header["scenario_json"]
        bodies = header["bodies"]
        if not isinstance(scenario_json, str) or not isinstance(bodies, list):
            raise ValueError("scenario_json or bodies has the wrong type")
        meshes: dict[str, bytes] = {}
        checks: dict[str, PartCheck] = {}
        offset = 0
        for body in bodies:
            name, check, size = body["name"], body["check"], body["stl_bytes"]
            if not isinstance(name, str) or not isinstance(check, str) or type(size) is not int or size < 0:
                raise ValueError(f"malformed body entry {body!r:.200}")
            if name in meshes:
                raise ValueError(f"body {name!r} appears twice")
            checks[name] = PartCheck.from_json(check)
            meshes[name] = payload[offset : offset + size]
            offset += size
        if offset != len(payload):
            raise ValueError(f"meshes take {offset} bytes of a {len(payload)}-byte payload")
    except (ValueError, KeyError, TypeError, GeometryError, UnicodeDecodeError, OverflowError, RecursionError) as err:
        # The script can write the result file itself: an integer too large for a float (OverflowError)
        # or JSON nested thousands deep (RecursionError) must fail the build, not the host.
        return BuildOutcome.failed(
            BuildFailure.CRASH,
            f"the sandbox returned a malformed result ({type(err).__name__}: {str(err)[:300]}); did the script "
            "tamper with stdout or its "
            "working folder?",
            output_tail=tail,
            duration_s=duration_s,
        )
    try:
        scenario = Scenario.model_validate_json(scenario_json)
    except ValidationError as err:
        return BuildOutcome.failed(
            BuildFailure.CONTRACT,
            f"build returned a Scenario that does not validate: {err}",
            output_tail=tail,
            duration_s=duration_s,
        )
    names = [body.name for body in scenario.bodies]
    if sorted(names) != sorted(meshes):
        return BuildOutcome.failed(
            BuildFailure.CRASH,
            f"the sandbox returned meshes for {sorted(meshes)} but the scenario has bodies {sorted(names)}",
            output_tail=tail,
            duration_s=duration_s,
        )
    return BuildOutcome(
        ok=True,
        failure=None,
        message="",
        scenario_json=scenario_json,
        meshes=meshes,
        part_checks=checks,
        output_tail=tail,
        duration_s=duration_s,
        timings_s=timings_s,
    )


def outcome_from_worker(
    done: Mapping[str, Any], result: bytes, limits: SandboxLimits, duration_s: float
) -> BuildOutcome:
    """Turn a worker's ``done`` message and the job's raw result into a `BuildOutcome`."""
    tail_value = done.get("output_tail", "")
    tail = tail_value[-OUTPUT_TAIL_BYTES:] if isinstance(tail_value, str) else ""
    if result:
        return _outcome_from_result(result, tail, duration_s)
    return _outcome_without_result(done, limits, tail, duration_s)


# ---------------------------------------------------------------------------------------------------
# The pool


class SandboxPool:
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
    ) -> None:
        """``hidden_paths``: more folders to hide behind an empty tmpfs (BWRAP), besides home folders."""
        if workers < 1:
            raise SandboxError(f"a sandbox pool needs at least 1 worker, got {workers}")
        self.limits = limits
        self.mode = resolve_mode(SandboxMode(mode), limits, hidden_paths)
        self._workers = [_Worker(self.mode, limits, tuple(hidden_paths)) for _ in range(workers)]
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

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        source_bytes = len(script_source.encode("utf-8", "surrogatepass"))
        if source_bytes > MAX_SCRIPT_BYTES:
            return BuildOutcome.failed(
                BuildFailure.IMPORT,
                f"the script is {source_bytes} bytes, over the {MAX_SCRIPT_BYTES} byte limit; keep scripts small",
            )
        self._start_all()
        worker = self._idle.get()
        try:
            return self._run_on(worker, script_source, request)
        finally:
            self._idle.put(worker)

    def map_builds(self, script_source: str, requests: Sequence[BuildRequest]) -> list[BuildOutcome]:
        """`run_build` for each request, spread over the workers in parallel; results in request order."""
        if not requests:
            return []
        self._start_all()
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as executor:
            return list(executor.map(lambda request: self.run_build(script_source, request), requests))

    def _run_on(self, worker: _Worker, script_source: str, request: BuildRequest) -> BuildOutcome:
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
            "seed": int(request.seed),
            "scale": [float(value) for value in request.scale],
            "stl_tolerance_mm": float(request.stl_tolerance_mm),
            "stl_angular_tolerance_rad": float(request.stl_angular_tolerance_rad),
            "limits": {
                "memory_mb": self.limits.memory_mb,
                "cpu_s": self.limits.cpu_s,
                "max_output_mb": self.limits.max_output_mb,
                "max_processes": self.limits.max_processes,
                "max_open_files": self.limits.max_open_files,
            },
        }
        started = time.monotonic()
        try:
            done, result = worker.run(job)
        except Deadline:
            self._replace(worker)
            return BuildOutcome.failed(
                BuildFailure.TIMEOUT,
                f"build(seed={request.seed}, scale={request.scale}) did not finish within the wall-clock limit of "
                f"{self.limits.wall_s} s (sleeping, blocked or too slow); make it faster or raise "
                "SCENARIOS_SANDBOX__WALL_LIMIT_S",
                duration_s=time.monotonic() - started,
            )
        except _WorkerLost as err:
            self._replace(worker)
            return BuildOutcome.failed(
                BuildFailure.CRASH,
                f"the sandbox worker died while running build(seed={request.seed}) "
                f"({str(err) or 'its pipe closed'}): the "
                "script killed its parent process or every process it could reach; a script must only return "
                "a Scenario",
                duration_s=time.monotonic() - started,
            )
        return outcome_from_worker(done, result, self.limits, time.monotonic() - started)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor at once, so it warms up while others work."""
        worker.kill()
        with self._lock:
            if not self._closed:
                self._spawn(worker)

