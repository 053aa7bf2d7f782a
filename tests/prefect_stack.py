"""A real local stack for tests: Prefect server, process worker and SeaweedFS on free 127.0.0.1 ports.

`scripts/stack.sh` brings it up (the same script as ``make demo``) with its state in a temporary
folder, and takes it down afterwards. Use the `prefect_stack` fixture (session-scoped: one stack per
test session) in a test module with::

    from tests.prefect_stack import LocalStack, prefect_stack  # noqa: F401
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from scenario_lib.store.dataset import DatasetStore

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "scripts" / "stack.sh"
# What the worker's flow runs use besides the stack's own settings: faster validation for tests.
WORKER_SETTINGS = {
    "SCENARIOS_VALIDATION__SEEDS": "2",
    "SCENARIOS_SANDBOX__WORKERS": "1",
    "SCENARIOS_LLM__PROVIDER": "offline",
}
_GRPC_OFFSET = 10_000  # SeaweedFS puts each gRPC port 10000 above its HTTP port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(size: int, *, low: int = 20_000, high: int = 29_000, tries: int = 200) -> int:
    """A base port such that base..base+size-1 and the same +10000 are all free on 127.0.0.1."""
    for _ in range(tries):
        base = random.randrange(low, high - size)
        ports = [base + i for i in range(size)] + [base + i + _GRPC_OFFSET for i in range(size)]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError(f"no block of {size} free ports (and +{_GRPC_OFFSET}) between {low} and {high}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def max_overlap(intervals: Sequence[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end at t closes before a start at t opens)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


@dataclass(frozen=True)
class DeploymentRun:
    """What `prefect deployment run … --watch` did."""

    flow_run_id: UUID | None
    returncode: int
    output: str
    wall_s: float


@dataclass(frozen=True)
class LocalStack:
    """A running stack: its URLs, its state folder and the environment of a shell that talks to it."""

    state_dir: Path
    env: dict[str, str]
    api_url: str
    ui_url: str
    s3_endpoint: str

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. ``prefect …``) in the repository with the stack's environment."""
        return subprocess.run(
            list(args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def run_deployment(self, name: str, *params: str, timeout: float = 300) -> DeploymentRun:
        """``prefect deployment run NAME -p K=V … --watch``, timed from the call to the final state."""
        command = [str(REPO / ".venv" / "bin" / "prefect"), "deployment", "run", name, "--watch", "--watch-interval", "1"]
        for param in params:
            command += ["-p", param]
        started = time.perf_counter()
        done = self.run(*command, timeout=timeout)
        output = done.stdout + done.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        return DeploymentRun(
            flow_run_id=UUID(match[1]) if match else None,
            returncode=done.returncode,
            output=output,
            wall_s=time.perf_counter() - started,
        )

    def store(self) -> DatasetStore:
        """The dataset store the worker writes to."""
        return DatasetStore.from_url(
            self.env["SCENARIOS_STORE__URL"],
            endpoint_url=self.env["SCENARIOS_STORE__ENDPOINT_URL"],
            access_key=self.env["SCENARIOS_STORE__ACCESS_KEY"],
            secret_key=self.env["SCENARIOS_STORE__SECRET_KEY"],
            create_bucket=False,
        )

    def client(self) -> Any:
        """A sync Prefect client on this stack's API (use as a context manager)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def log(self, name: str) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _stack_env(env: dict[str, str]) -> dict[str, str]:
    printed = subprocess.run(["bash", str(STACK), "env"], env=env, capture_output=True, text=True, check=True).stdout
    exports = dict(re.findall(r"^export ([A-Z0-9_]+)=(.*)$", printed, flags=re.MULTILINE))
    return {**env, **exports}


@pytest.fixture(scope="session")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Bring the stack up on free ports for the session (``stack.sh up``) and down at its end."""
    state = tmp_path_factory.mktemp("stack")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCENARIOS_"))}
    base_env = {
        **inherited,
        **WORKER_SETTINGS,
        "SCENARIOS_STATE_DIR": str(state),
        "SCENARIOS_PREFECT_PORT": str(free_port()),
        "SCENARIOS_S3_PORT": str(free_port_block(1)),
        "SCENARIOS_WEED_PORT_BASE": str(free_port_block(4)),
    }
    env = _stack_env(base_env)
    try:
        up = subprocess.run(["bash", str(STACK), "up"], env=base_env, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            raise RuntimeError(f"scripts/stack.sh up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        yield LocalStack(
            state_dir=state,
            env=env,
            api_url=env["PREFECT_API_URL"],
            ui_url=env["PREFECT_UI_URL"],
            s3_endpoint=env["SCENARIOS_STORE__ENDPOINT_URL"],
        )
    finally:
        down = subprocess.run(["bash", str(STACK), "down"], env=base_env, capture_output=True, text=True, timeout=120)
        print(f"scripts/stack.sh down: {down.stdout.strip()} {down.stderr.strip()}")
