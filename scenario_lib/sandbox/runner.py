"""The sandboxed side of `scenario_lib.sandbox.pool`: a warm worker that forks one child per series of builds.

Started by `SandboxPool` as ``python -I -c "... main()" --scratch DIR --clean-scratch --huge-pages-after
JOBS [--own-pid-namespace]``, usually inside bubblewrap as uid 65534. The worker imports build123d once,
tells the host it is ready, then loops: read a ``build`` frame on stdin (one script and the seeds and
scales to build it at), fork a child that runs the builds one after another under resource limits in its
own job folder, and answer each build with a ``done`` frame whose payload is the child's result file for
it, passed on unread (the host parses it as untrusted data). A child that dies mid-series (a crash, a
limit) is answered for the build it was running from its exit status, and a fresh child takes the builds
after it. When the series is over, whatever the script left running is killed.

One child per series rather than per build: a fresh fork of the worker pays for copying its ~250 MB
address space on write, about two thirds of a small build's CPU here. The builds of a series are of
the same script, so they share nothing another script could see; before each build the child resets
the global random generators to one fixed state and imports the script anew.

The messages both sides exchange are `scenario_lib.sandbox.protocol`. This module imports nothing heavy
at module level.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import importlib.util
import inspect
import math
import os
import re
import resource
import select
import shutil
import signal
import stat
import sys
import time
import traceback
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from scenario_lib.sandbox.protocol import (
    EXIT_RESULT_UNWRITABLE,
    OUTPUT_TAIL_BYTES,
    BuildFailure,
    encode_frame,
    read_frame,
    write_frame,
)

SCRIPT_MODULE = "scenario_script"
SCRIPT_FILE = f"{SCRIPT_MODULE}.py"
OUTPUT_FILE = "output-{index}.log"  # the script's stdout and stderr during build ``index`` of the series
RESULT_FILE = "result-{index}.bin"
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------
# The worker


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def main(argv: list[str] | None = None) -> None:
    """Run the worker loop until the host closes stdin."""
    args = sys.argv[1:] if argv is None else argv
    scratch = Path(args[args.index("--scratch") + 1])
    clean_scratch = "--clean-scratch" in args
    own_pid_namespace = "--own-pid-namespace" in args
    # How many jobs before the huge-page collapse (see HUGE_PAGES_AFTER_JOBS in sandbox/command.py); 0: now.
    huge_pages_after = int(args[args.index("--huge-pages-after") + 1])
    # The protocol moves to private descriptors; fds 0/1 become /dev/null and stderr, so a stray print
    # (or a job child) can never write into the host's pipe.
    host_in, host_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    # Not dumpable: a job child (same uid) cannot ptrace the worker or open its /proc/<pid>/fd.
    # Subreaper: orphans of a job (daemonized, setsid) become our children, so we can kill them all.
    _prctl(_PR_SET_DUMPABLE, 0)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    started = time.perf_counter()
    _preload()
    if huge_pages_after == 0:
        _collapse_to_huge_pages()
    ready = {
        "op": "ready",
        "import_s": round(time.perf_counter() - started, 4),
        "pid": os.getpid(),
        "threads": len(os.listdir("/proc/self/task")),
    }
    write_frame(host_out, ready)
    # Read once: the binds of python, the venv and the package under the scratch folder are made by
    # bubblewrap before we start, and a job (no capabilities) cannot add one.
    mount_points = mount_points_under(scratch)
    job_number = 0
    while True:
        try:
            request, _ = read_frame(host_in)
        except Exception:  # EOF or garbage from the host: nothing sensible to do but stop
            return
        if request.get("op") != "build":
            return
        job_number += 1
        job_dir = scratch / f"job{job_number}"
        for done, result in _run_job(request, job_dir, (host_in, host_out), own_pid_namespace):
            write_frame(host_out, done, result)
        if clean_scratch:
            remove_job_files(scratch, mount_points)
        else:
            shutil.rmtree(job_dir, ignore_errors=True)
        if job_number == huge_pages_after:
            _collapse_to_huge_pages()


def _preload() -> None:
    """Import and exercise build123d and the checks once, so each forked job starts warm."""
    import build123d

    from scenario_lib.contract import Scenario  # noqa: F401
    from scenario_lib.scene.geometry import check_solid, export_stl

    box = build123d.Box(1.0, 1.0, 1.0)
    check_solid(box)
    export_stl(box)
    # Objects that exist now are shared copy-on-write with every child; keep the collector off them.
    gc.collect()
    gc.freeze()


_HUGE_PAGE = 2 * 1024 * 1024
_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25
# Private anonymous read-write mappings (the heap and the allocators' arenas); file-backed ones are skipped.
_ANON_RW = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*(?:\[heap\])?\s*$")


def _collapse_to_huge_pages() -> None:
    """Back the worker's anonymous memory with 2 MiB pages, where the kernel can (Linux >= 6.1).

    build123d leaves ~250 MB of anonymous memory behind; each job's fork copies (and its exit frees)
    one page-table entry per 4 KiB page of it, ~40 % of a small build's CPU here. With huge pages a
    fork copies one entry per 2 MiB, and a job's first write to one is still copied 4 KiB at a time.
    Best effort: where the kernel refuses, forks are as before.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps", encoding="ascii") as maps:
            regions = [_ANON_RW.match(line) for line in maps]
    except (OSError, AttributeError):
        return
    for match in filter(None, regions):
        low = (int(match[1], 16) + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        high = int(match[2], 16) & ~(_HUGE_PAGE - 1)
        if high - low >= _HUGE_PAGE and madvise(low, high - low, _MADV_HUGEPAGE) == 0:
            madvise(low, high - low, _MADV_COLLAPSE)


def _run_job(
    request: Mapping[str, Any], job_dir: Path, host_fds: tuple[int, int], own_pid_namespace: bool
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Run the job's series of builds: each build's ``done`` message and raw result, in order."""
    builds = request.get("builds")
    if not isinstance(builds, list) or not builds:
        return
    job_dir.mkdir(mode=0o700)
    first = 0
    while first < len(builds):
        first += yield from _run_child(request, first, len(builds), job_dir, host_fds, own_pid_namespace)


def _run_child(
    request: Mapping[str, Any], first: int, count: int, job_dir: Path, host_fds: tuple[int, int], own_pid_namespace: bool
) -> Generator[tuple[dict[str, Any], bytes], None, int]:
    """Fork one child for builds ``first..count-1``; yield each one's answer; return how many were answered.

    The child writes a byte to a pipe after each result file but the last; when it exits or dies, the
    build it was in is answered from its result file and exit status.
    """
    limits = request.get("limits", {})
    cap = int(limits.get("max_output_mb", 256)) * _MB + 16 * _MB
    progress_read, progress_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(progress_read)
            _child(request, first, job_dir, host_fds, progress_write)
        finally:
            os._exit(70)
    os.close(progress_write)
    try:
        exited: int | None = os.pidfd_open(pid)
    except OSError:  # no pidfd (Linux < 5.3): _next_progress polls for the exit
        exited = None
    answered = 0
    cpu_before = 0.0

    def done(index: int, cpu_s: float, **status: Any) -> dict[str, Any]:
        tail = _read_regular(job_dir / OUTPUT_FILE.format(index=index), OUTPUT_TAIL_BYTES, tail=True)
        return {
            "op": "done",
            **status,
            "cpu_s": round(max(0.0, cpu_s), 4),
            "wall_s": round(time.monotonic() - started, 4),
            "output_tail": tail.decode("utf-8", "replace"),
        }

    try:
        # One byte per finished build but the last, which is answered once the child has exited (as the
        # build a child dies in is); more bytes (the script can write to the pipe) only end the wait early.
        while first + answered < count - 1 and _next_progress(progress_read, pid, exited):
            index = first + answered
            cpu_now = _cpu_of(pid)
            yield done(index, cpu_now - cpu_before, exit_code=0, signal=None), _read_regular(
                job_dir / RESULT_FILE.format(index=index), cap
            )
            cpu_before, started = cpu_now, time.monotonic()
            answered += 1
    finally:
        os.close(progress_read)
        if exited is not None:
            os.close(exited)
        _, status, usage = os.wait4(pid, 0)
    # What the child started must not outlive it (a fork bomb, a daemon), nor run beside the next child.
    _kill_leftovers(own_pid_namespace)
    index = first + answered
    yield done(
        index,
        usage.ru_utime + usage.ru_stime - cpu_before,
        exit_code=os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        max_rss_mb=round(usage.ru_maxrss / 1024, 1),
    ), _read_regular(job_dir / RESULT_FILE.format(index=index), cap)
    return answered + 1


def _next_progress(progress: int, pid: int, exited: int | None) -> bool:
    """Wait for the child's next progress byte (True) or its exit (False); ``exited`` is its pidfd.

    Not for EOF on the pipe: processes the script started hold its write end after the child is gone.
    A byte written before the child exited still counts.
    """
    watched = [progress] if exited is None else [progress, exited]
    while True:
        readable, _, _ = select.select(watched, [], [], 0.05 if exited is None else None)
        if progress in readable:
            return bool(os.read(progress, 1))
        if exited is not None and exited in readable:
            return False
        if exited is None and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return False


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc (0.0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _kill_leftovers(own_pid_namespace: bool) -> None:
    """Kill every process a job left behind (fork bombs, daemons), then reap them.

    ``own_pid_namespace`` must be True only inside the sandbox's pid namespace (BWRAP mode).
    """
    for _ in range(200):
        children = _my_children()
        if not children:
            break
        if own_pid_namespace and os.getuid() != 0:
            # Inside our own pid namespace as an unprivileged user, kill(-1) reaches exactly the
            # job's processes (never us, never the namespace init): one syscall for a whole fork bomb.
            # Outside one (RLIMITS mode) it would kill every process of the user: never there.
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap(block=True)
    _reap(block=False)


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        block = False


def _my_children() -> list[int]:
    me = os.getpid()
    try:
        tasks = os.listdir(f"/proc/{me}/task")
    except OSError:
        tasks = [str(me)]
    children: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{me}/task/{task}/children", "rb") as handle:
                children.extend(int(pid) for pid in handle.read().split())
        except OSError:
            continue
    return children


def _read_regular(path: Path, limit: int, tail: bool = False) -> bytes:
    """Read at most ``limit`` bytes of a regular file written by the job (never a link, FIFO or device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b""
        if tail:
            os.lseek(fd, max(0, info.st_size - limit), os.SEEK_SET)
        elif info.st_size > limit:
            return b""
        chunks: list[bytes] = []
        remaining = limit
        while remaining:
            chunk = os.read(fd, min(remaining, _MB))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def mount_points_under(folder: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> frozenset[Path]:
    """Mount points strictly below ``folder``, read from ``mountinfo`` (empty when it cannot be read)."""
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    prefix = str(folder).rstrip("/") + "/"
    points: set[Path] = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        # The kernel writes space, tab, newline and backslash in a mount point as octal escapes (\040).
        point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
        if point.startswith(prefix):
            points.add(Path(point))
    return frozenset(points)


def remove_job_files(folder: Path, mount_points: frozenset[Path]) -> None:
    """Delete everything in ``folder`` that jobs left there, never a mount point nor anything inside one.

    A folder that holds a mount point further down (the parents bubblewrap made for a bind under
    /tmp) is kept and cleaned around, so a checkout or venv bound under /tmp is never walked.
    """
    try:
        entries = [Path(entry.path) for entry in os.scandir(folder)]
    except OSError:
        return
    for entry in entries:
        if entry in mount_points:
            continue
        if any(point.is_relative_to(entry) for point in mount_points):
            remove_job_files(entry, mount_points)
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            continue


# ---------------------------------------------------------------------------------------------------
# The job child: everything below runs in the forked process that executes untrusted code.


def _child(request: Mapping[str, Any], first: int, job_dir: Path, host_fds: tuple[int, ...], progress: int) -> NoReturn:
    # The worker may die (the script can kill it); then so must we.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    for fd in host_fds:
        os.close(fd)
    os.chdir(job_dir)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd in _open_fds():
        if fd > 2 and fd != progress:
            try:
                os.close(fd)
            except OSError:
                pass
    builds: Sequence[Mapping[str, Any]] = request["builds"]
    limits = request.get("limits", {})
    _set_limits(limits, len(builds) - first)
    os.environ.clear()
    os.environ.update(
        {"PATH": "/usr/bin:/bin", "HOME": str(job_dir), "TMPDIR": str(job_dir), "LANG": "C.UTF-8"}
        | {key: "1" for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    )
    for index in range(first, len(builds)):
        log = os.open(OUTPUT_FILE.format(index=index), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        _allow_cpu(int(limits.get("cpu_s", 60)))
        _reset_random_generators()
        header, payload = _build({**request, **builds[index]}, job_dir)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # the log hit the file-size limit, or the script closed it
                pass
        if not _write_result(header, payload, job_dir / RESULT_FILE.format(index=index)):
            os._exit(EXIT_RESULT_UNWRITABLE)
        if index == len(builds) - 1:
            break
        try:
            os.write(progress, b".")
        except OSError:  # the worker is gone
            break
    os._exit(0)


def _reset_random_generators() -> None:
    """Start the global random generators (`random`, numpy's once loaded) from one fixed state.

    A script that draws from them unseeded then builds the same for the same seed and scale, whichever
    worker runs it and whatever builds came before it in the series.
    """
    import random

    random.seed(0)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed(0)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 256))


def _set_limits(limits: Mapping[str, Any], builds: int) -> None:
    """The child's limits; CPU: the hard limit covers its ``builds`` builds, `_allow_cpu` gives each its share."""
    memory = int(limits.get("memory_mb", 2048)) * _MB
    cpu_s = int(limits.get("cpu_s", 60))
    output = int(limits.get("max_output_mb", 256)) * _MB
    for kind, soft, hard in (
        (resource.RLIMIT_AS, memory, memory),
        # SIGXCPU at the soft limit; SIGKILL at the hard one if the script ignores it (or raised its soft
        # limit: the host's wall-clock limit per build still holds).
        (resource.RLIMIT_CPU, cpu_s, builds * (cpu_s + 1)),
        (resource.RLIMIT_FSIZE, output, output),
        (resource.RLIMIT_NPROC, int(limits.get("max_processes", 64)), int(limits.get("max_processes", 64))),
        (resource.RLIMIT_NOFILE, int(limits.get("max_open_files", 256)), int(limits.get("max_open_files", 256))),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(kind, (soft, hard))


def _allow_cpu(cpu_s: int) -> None:
    """Move the soft CPU limit to ``cpu_s`` seconds from now (RLIMIT_CPU counts the child's whole life)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + cpu_s
    resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))


def _write_result(header: Mapping[str, Any], payload: bytes, path: Path) -> bool:
    frames = [encode_frame(header, payload)]
    if payload:
        # If the meshes do not fit under the file-size limit, still report why.
        frames.append(
            encode_frame(
                {
                    "failure": BuildFailure.OUTPUT_LIMIT.value,
                    "message": f"the meshes ({len(payload)} bytes) exceed the output limit; "
                    "simplify the parts or raise stl_tolerance_mm",
                }
            )
        )
    for frame in frames:
        try:
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(frame)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            return True
        except OSError:
            continue
    return False


def _failure(failure: BuildFailure, message: str, timings: Mapping[str, float]) -> tuple[dict[str, Any], bytes]:
    return {"failure": failure.value, "message": message, "timings_s": dict(timings)}, b""


def _classify(err: BaseException, default: BuildFailure) -> BuildFailure:
    if isinstance(err, MemoryError) or "OutOfMemory" in type(err).__name__:
        return BuildFailure.MEMORY
    if isinstance(err, OSError) and err.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
        return BuildFailure.OUTPUT_LIMIT
    if isinstance(err, SystemExit):
        return BuildFailure.CRASH
    return default


def _describe(err: BaseException, script: Path, what: str) -> str:
    """``<what> raised Type: message (scenario_script.py line N: code)`` with the script's last frame."""
    if isinstance(err, SystemExit):
        return f"{what} called sys.exit({err.code!r}); return a Scenario instead of exiting"
    detail = f"{type(err).__name__}: {err}"
    if isinstance(err, SyntaxError):
        return f"{what} failed: {detail}".rstrip()
    from scenario_lib.sandbox.hints import hint_for

    frames = [frame for frame in traceback.extract_tb(err.__traceback__) if frame.filename == str(script)]
    line = (frames[-1].line or "").strip() if frames else ""
    where = f" (script line {frames[-1].lineno}: {line})" if frames else ""
    hint = ""
    if isinstance(err, MemoryError):
        hint = "; the job ran out of its memory limit: allocate less"
    elif isinstance(err, OSError) and err.errno in (errno.EFBIG, errno.ENOSPC):
        hint = "; the job hit its output/file-size limit: write less"
    elif _is_validation_error(err):
        from scenario_lib import contract

        model = getattr(contract, str(getattr(err, "title", "")), None)
        if isinstance(model, type):
            detail = f"{type(err).__name__}: " + "; ".join(contract.describe_validation_error(err, model))  # type: ignore[arg-type]
    else:
        known = hint_for(err, line)
        hint = f"; hint: {known}" if known else ""
    return f"{what} raised {detail}{where}{hint}"


def _is_validation_error(err: BaseException) -> bool:
    return type(err).__name__ == "ValidationError" and type(err).__module__.startswith("pydantic")


def _build(request: Mapping[str, Any], job_dir: Path) -> tuple[dict[str, Any], bytes]:
    from pydantic import ValidationError

    from scenario_lib.contract import Scenario, collecting_contract_errors, describe_validation_error
    from scenario_lib.scene.geometry import check_solid, export_stl, is_nonempty_shape

    timings: dict[str, float] = {}
    script = job_dir / SCRIPT_FILE
    # Every invalid contract object the script makes is recorded and the build goes on, so the
    # answer lists all of them at once instead of the first.
    with collecting_contract_errors() as contract_errors:
        scenario, failed = _run_script(request, job_dir, timings)
    if contract_errors:
        message = _describe_contract_errors(contract_errors, script)
        if failed is not None:
            message += f"\n(after these, the script went on to fail: {failed[0]['message']})"
        return _failure(BuildFailure.CONTRACT, message, timings)
    if failed is not None:
        return failed
    if not isinstance(scenario, Scenario):
        return _failure(
            BuildFailure.CONTRACT,
            f"build returned {type(scenario).__name__}, expected scenario_lib.contract.Scenario",
            timings,
        )
    try:
        # A round trip catches a Scenario built with model_construct (validation skipped).
        scenario_json = scenario.model_dump_json()
        Scenario.model_validate_json(scenario_json)
    except ValidationError as err:
        problems = "; ".join(describe_validation_error(err, Scenario))
        return _failure(BuildFailure.CONTRACT, f"build returned an invalid Scenario: {problems}", timings)
    except Exception as err:  # a serialization error
        return _failure(BuildFailure.CONTRACT, f"build returned an invalid Scenario: {err}", timings)
    names = [body.name for body in scenario.bodies]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return _failure(BuildFailure.CONTRACT, f"body names must be unique; repeated: {duplicates}", timings)

    started = time.perf_counter()
    bodies: list[dict[str, Any]] = []
    meshes: list[bytes] = []
    check_parts = request.get("check_parts", True) is not False
    for body in scenario.bodies:
        part = body.part
        if part is None or not _is_shape(part):
            return _failure(
                BuildFailure.CONTRACT,
                f"body {body.name!r} has part={type(part).__name__}; set part= to a build123d Part/Solid in mm",
                timings,
            )
        if not check_parts:
            continue
        try:
            check = check_solid(part)
            stl = (
                export_stl(part, float(request["stl_tolerance_mm"]), float(request["stl_angular_tolerance_rad"]))
                if is_nonempty_shape(part)
                else b""
            )
        except BaseException as err:  # noqa: BLE001 - the part's own methods may be script code
            failure = _classify(err, BuildFailure.EXCEPTION)
            return _failure(failure, _describe(err, script, f"checking and exporting body {body.name!r}"), timings)
        bodies.append({"name": body.name, "check": check.to_json(), "stl_bytes": len(stl)})
        meshes.append(stl)
    timings["checks_s"] = time.perf_counter() - started
    header = {"failure": None, "scenario_json": scenario_json, "bodies": bodies, "timings_s": timings}
    return header, b"".join(meshes)


def _describe_contract_errors(errors: list[Any], script: Path) -> str:
    lines = [f"the script made {len(errors)} invalid contract object(s); fix all of these:"]
    for error in errors:
        frames = [frame for frame in error.stack if frame[0] == str(script)]
        where = f" (script line {frames[-1][1]}: {frames[-1][2]})" if frames else ""
        lines += [f"- {problem}{where}" for problem in error.problems]
    return "\n".join(lines)


def _run_script(
    request: Mapping[str, Any], job_dir: Path, timings: dict[str, float]
) -> tuple[object, tuple[dict[str, Any], bytes] | None]:
    """Import the script and call build: (what it returned, None), or (None, the failure frame)."""
    seed = int(request["seed"])
    scale = tuple(float(value) for value in request["scale"])
    script = job_dir / SCRIPT_FILE
    started = time.perf_counter()
    try:
        script.write_text(str(request["source"]), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(SCRIPT_MODULE, script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[SCRIPT_MODULE] = module
        spec.loader.exec_module(module)
    except BaseException as err:  # noqa: BLE001 - untrusted code may raise anything, SystemExit included
        return None, _failure(_classify(err, BuildFailure.IMPORT), _describe(err, script, "importing the script"), timings)
    timings["import_s"] = time.perf_counter() - started

    build = getattr(module, "build", None)
    if not callable(build):
        return None, _failure(
            BuildFailure.CONTRACT,
            "the script defines no build function; define "
            "`def build(seed: int, scale: tuple[float, float, float]) -> Scenario`",
            timings,
        )
    try:
        inspect.signature(build).bind(seed, scale)
    except TypeError:
        return None, _failure(
            BuildFailure.CONTRACT,
            f"build{inspect.signature(build)} cannot be called as build(seed, scale); define "
            "`def build(seed: int, scale: tuple[float, float, float]) -> Scenario`",
            timings,
        )
    except ValueError:
        pass  # no signature to inspect (a builtin): just call it
    started = time.perf_counter()
    try:
        scenario = build(seed, scale)
    except BaseException as err:  # noqa: BLE001
        what = f"build(seed={seed}, scale={scale})"
        return None, _failure(_classify(err, BuildFailure.EXCEPTION), _describe(err, script, what), timings)
    timings["build_s"] = time.perf_counter() - started
    return scenario, None


def _is_shape(part: object) -> bool:
    from build123d import Shape

    return isinstance(part, Shape)
