"""The resource limits of one sandboxed job."""

from __future__ import annotations

from dataclasses import dataclass

from scenario_lib.errors import SandboxError


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


__all__ = ["SandboxLimits"]
