"""Scale-out on existing engines: the generate flow on a Dask cluster, and two Prefect workers on one pool.

Both keep the global concurrency limit: never more than 4 seeds generate at once, whichever process
or machine runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import STAGING_PREFIX, parse_scenario_id
from tests.prefect_stack import REPO, LocalStack, max_overlap, prefect_stack  # noqa: F401
from tests.support import REPO

pytestmark = pytest.mark.slow

SERVER_ENV = {
    "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def _slot_intervals(rows: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(r["slot_acquired_at"]), datetime.fromisoformat(r["slot_released_at"])) for r in rows]


@pytest.fixture(scope="module")
def dask_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Prefect test server with the 4-slot limit, and worker-like settings with a local store."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.testing.utilities import prefect_test_harness

    root = tmp_path_factory.mktemp("dask")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SERVER_ENV.items():
            patch.setenv(name, value)
        patch.setenv("SCENARIOS_STORE__URL", f"file://{root / 'store'}")
        patch.setenv("SCENARIOS_VALIDATION__SEEDS", "2")
        patch.setenv("SCENARIOS_SANDBOX__WORKERS", "1")  # per Dask worker process
        patch.setenv("SCENARIOS_LLM__PROVIDER", "offline")
        with prefect_test_harness(server_startup_timeout=120):
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="scenario-generation", limit=4))
            yield root


def test_generate_runs_its_seeds_on_a_local_dask_cluster_of_two_workers(dask_env: Path) -> None:
    from flows.generate import generate

    state = generate(
        tier="test_dummy", count=4, run_id="dask-run", task_runner="dask", dask_workers=2, return_state=True
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.passed, result.count) == (4, 4)
    staged = [name for name in list_scenarios(DatasetStore.from_url(f"file://{dask_env / 'store'}"), STAGING_PREFIX)]
    assert sorted(parse_scenario_id(name)[1] for name in staged if name.startswith("dask-run_")) == sorted(
        seed.outcome.seed for seed in result.seeds if seed.outcome.passed
    )
    slots = [(s.slot_acquired_at, s.slot_released_at) for s in result.seeds]
    assert all(start and end for start, end in slots)
    assert max_overlap(slots) <= 4  # type: ignore[arg-type]


def test_the_dask_runner_rejects_a_bad_worker_count(dask_env: Path) -> None:
    from flows.generate import generate

    state = generate(tier="test_dummy", count=1, task_runner="dask", dask_workers=0, return_state=True)
    assert state.is_failed()
    assert "dask_workers must be from 1 to 64" in str(state.message)


def _start_worker(stack: LocalStack, pool: str, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = stack.state_dir / "logs" / f"{name}.log"
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
         "--name", name, "--limit", "1"],
        cwd=REPO, env=stack.env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return process, log


def _stop(process: subprocess.Popen[bytes]) -> None:
    # A worker forwards the first SIGTERM to its flow run and waits; the second one ends it.
    for _ in range(2):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_two_workers_on_one_pool_split_the_runs_and_share_four_slots(prefect_stack: LocalStack) -> None:  # noqa: F811
    """Two process workers (one flow run at a time each) on a fresh pool: two runs go one to each worker."""
    stack = prefect_stack
    pool = "scale-out"
    setup = stack.run(
        str(REPO / ".venv" / "bin" / "python"), "scripts/stack_admin.py", "setup", "--pool", pool,
        "--template", "deployments/process-work-pool.json", "--limit", "scenario-generation", "--slots", "4",
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    deploy = stack.run(
        str(REPO / ".venv" / "bin" / "prefect"), "--no-prompt", "deploy", "flows/generate.py:generate",
        "--name", "scale-out", "--pool", pool, timeout=180,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    workers = [_start_worker(stack, pool, name) for name in ("worker-a", "worker-b")]
    try:
        command = [str(REPO / ".venv" / "bin" / "prefect"), "deployment", "run", "generate/scale-out",
                   "-p", "tier=test_dummy", "-p", "count=4", "--watch", "--watch-interval", "1"]  # fmt: skip
        runs = [
            subprocess.Popen(command, cwd=REPO, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
    finally:
        for process, _ in workers:
            _stop(process)
    flow_run_ids = [output.split("UUID: ", 1)[1].split()[0] for output in outputs]
    logs = [log.read_text(errors="replace") for _, log in workers]
    # Each worker submitted exactly one of the two flow runs.
    assert sorted(sum(run_id in log for run_id in flow_run_ids) for log in logs) == [1, 1], logs
    assert all(any(run_id in log for log in logs) for run_id in flow_run_ids)

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    slots: list[tuple[datetime, datetime]] = []
    with stack.client() as client:
        for flow_run_id in flow_run_ids:
            [table] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
                    key=ArtifactFilterKey(any_=["generated-scenarios"]),
                )
            )
            rows = table.data if isinstance(table.data, list) else json.loads(table.data)
            slots += _slot_intervals(rows)
    assert len(slots) == 8
    assert 1 < max_overlap(slots) <= 4
