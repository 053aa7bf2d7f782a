"""The command that starts a sandbox worker: bubblewrap's arguments, the worker's environment, and the
checks that the sandbox user can read what the worker imports.

In `SandboxMode.BWRAP` the worker lives in a bubblewrap sandbox (no network, its own pid/ipc/uts
namespaces, read-only root, home directories hidden, a size-capped private ``/tmp``) as uid 65534
without capabilities. `SandboxMode.RLIMITS` keeps only the job's resource limits.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from scenario_lib.config import SandboxMode
from scenario_lib.errors import SandboxError
from scenario_lib.sandbox.limits import SandboxLimits

# uid/gid of the worker inside the bubblewrap sandbox ("nobody"): dropping root is what makes
# RLIMIT_NPROC apply at all (root ignores it) and takes away every capability.
SANDBOX_UID = 65534
# Where the scratch tmpfs is mounted inside the sandbox, and its job folders.
SANDBOX_TMP = "/tmp"
_RUNNER_MODULE = "scenario_lib.sandbox.runner"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the scenario_lib package (this module is in sandbox/)
_REPO_ROOT = PACKAGE_DIR.parent
# Paths hidden behind an empty tmpfs in the sandbox: home directories (credentials, SSH keys, cloud
# configs), runtime sockets (/run: a unix socket on a read-only mount can still be connected to) and
# shared temporary folders of the host.
_HIDDEN_BY_DEFAULT = ("/root", "/home", "/run", "/var/tmp", "/mnt", "/media", "/srv")



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


# A worker backs its memory with huge pages after this many jobs: the collapse costs ~0.3 CPU-s and saves
# ~8 CPU-ms a fork (a scenario's validation forks about three times), so a worker that serves a
# one-scenario CLI run would never recoup it. A long-lived worker (the validation service's) collapses at
# once (0), so the first runs it serves fork as cheaply as the later ones.
HUGE_PAGES_AFTER_JOBS = 8


def python_command(scratch: str, own_pid_namespace: bool, huge_pages_after_jobs: int = HUGE_PAGES_AFTER_JOBS) -> list[str]:
    # -I: ignore PYTHON* variables, the user site and the current folder; the repository is put on
    # sys.path explicitly so the worker imports this very scenario_lib.
    boot = f"import sys; sys.path.insert(0, {str(_REPO_ROOT)!r}); from {_RUNNER_MODULE} import main; main()"
    command = [sys.executable, "-I", "-c", boot, "--scratch", scratch, "--clean-scratch"]
    command += ["--huge-pages-after", str(huge_pages_after_jobs)]
    return command + (["--own-pid-namespace"] if own_pid_namespace else [])


def hidden_paths(extra: Sequence[str | Path]) -> list[str]:
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
    candidates = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, str(PACKAGE_DIR))}
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
        if _is_below(folder, str(PACKAGE_DIR)):
            candidates += [str(p) for p in sorted(PACKAGE_DIR.rglob("*")) if "__pycache__" not in p.parts]
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
    hidden_folders = hidden_paths(hidden)
    # A folder above python, the venv or the package that uid 65534 cannot enter (a home folder, a
    # `mktemp -d` folder, a clone under umask 077) is hidden like a home folder; what is needed from
    # inside it is bound back below.
    for path in needed:
        closed = _closed_ancestor(path)
        if closed and not any(_is_below(closed, h) for h in [*hidden_folders, SANDBOX_TMP]):
            hidden_folders.append(closed)
    hidden_folders = sorted(set(hidden_folders), key=len)
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
    for path in hidden_folders:
        command += ["--tmpfs", path]
    # Room for one file at the size limit plus the job's result (meshes can be as large again).
    size = str((2 * limits.max_output_mb + 32) * 1024 * 1024)
    command += ["--perms", "01777", "--size", size, "--tmpfs", SANDBOX_TMP, "--dev", "/dev", "--proc", "/proc"]
    # Mounted after the tmpfs layers: python, the venv and this package may live under a hidden folder
    # or under /tmp itself (a CI checkout in /tmp/...). bubblewrap makes the folders between the tmpfs
    # and the bind with the modes of the originals (0700 for a `mktemp -d` folder), so they are
    # opened up to 0755: they hold nothing but the way to the bind.
    for path in needed:
        covers = [h for h in [*hidden_folders, SANDBOX_TMP] if _is_below(path, h)]
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


__all__ = [
    "PACKAGE_DIR",
    "SANDBOX_TMP",
    "SANDBOX_UID",
    "bwrap_command",
    "hidden_paths",
    "python_command",
    "resolve_mode",
    "unreadable_sandbox_path",
    "worker_env",
]
