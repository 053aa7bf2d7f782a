"""End to end: a real Prefect server and process worker and SeaweedFS (S3) on 127.0.0.1, started by scripts/stack.sh.

Deployments are run through the ``prefect deployment run`` command line, as a user would; the
scenarios are checked in the S3 bucket and the traces in the store.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from scenario_lib.validation.artifacts import MANIFEST_FILE, PREVIEW_FILE, REPORT_FILE
from scenario_lib.runs.promotion import read_manifest
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.layout import COMMIT_MARKER, join_key, staging_prefix
from scenario_lib.tracing import read_spans
from tests.prefect_stack import LocalStack, max_overlap, prefect_stack  # noqa: F401
from tests.support import REPO


def _flow_run(stack: LocalStack, flow_run_id: Any) -> Any:
    with stack.client() as client:
        return client.read_flow_run(flow_run_id)


def test_generate_test_dummy_then_promote_through_the_deployments(prefect_stack: LocalStack) -> None:  # noqa: F811
    stack = prefect_stack
    generated = stack.run_deployment("generate/test_dummy")
    assert generated.returncode == 0, generated.output[-3000:] + stack.log("worker")[-3000:]
    flow_run = _flow_run(stack, generated.flow_run_id)
    assert flow_run.state.is_completed()
    run_id = flow_run.name  # the flow names its run after the run id
    print(f"generate/test_dummy count=2: {generated.wall_s:.1f} s from `prefect deployment run` to Completed")
    # What `make demo` prints after its run: where the scenarios are and how to go on.
    reported = stack.run(
        str(REPO / ".venv" / "bin" / "python"), "scripts/stack_admin.py", "report", str(generated.flow_run_id),
        "--ui", "http://127.0.0.1:4200",
    )  # fmt: skip
    assert reported.returncode == 0, reported.stdout + reported.stderr
    assert f"flow run {run_id}: Completed" in reported.stdout and "2 scenarios staged in s3://" in reported.stdout
    # The flow run validated on the stack's long-lived service, not on pools of its own.
    service_log = stack.log("validation")
    assert "validated script" in service_log and "at base seed 0 " in service_log and "at base seed 1 " in service_log

    store = stack.store()
    assert store.url.startswith("s3://") and stack.s3_endpoint.startswith("http://127.0.0.1:")
    staged = [sid for sid in list_scenarios(store, "staging") if sid.startswith(f"{run_id}_")]
    assert staged == [f"{run_id}_0", f"{run_id}_1"]
    for scenario_id in staged:
        names = {key.rsplit("/", 1)[-1] for key in store.list_files(staging_prefix(scenario_id))}
        assert {COMMIT_MARKER, MANIFEST_FILE, REPORT_FILE, PREVIEW_FILE, "scene.xml", "scenario.py"} <= names

    promoted = stack.run_deployment("promote/default", f"run_id={run_id}", "dest=e2e")
    assert promoted.returncode == 0, promoted.output[-3000:]
    manifest = read_manifest(store, "e2e")
    assert manifest is not None and manifest.scenario_ids == staged
    assert store.exists(join_key("benchmarks", "e2e", "manifest.json"))
    assert all(store.exists(join_key(entry.path, MANIFEST_FILE)) for entry in manifest.entries)
    assert [sid for sid in list_scenarios(store, "staging") if sid.startswith(f"{run_id}_")] == []

    # An unknown run fails the flow run, and the command, with the library's message.
    unknown = stack.run_deployment("promote/default", "run_id=no-such-run", "dest=e2e")
    assert unknown.returncode != 0
    assert _flow_run(stack, unknown.flow_run_id).state.is_failed()
    assert "unknown run id 'no-such-run'" in _flow_run(stack, unknown.flow_run_id).state.message

    # The agent's spans nest under Prefect's task-run spans, which nest under the flow-run span.
    with tempfile.TemporaryDirectory() as folder:
        store.get_prefix("traces", Path(folder))
        spans = read_spans(sorted(Path(folder).glob(f"*{run_id}*.jsonl")))
    by_id = {span.span_id: span for span in spans}
    agents = [span for span in spans if span.name.startswith("invoke_agent")]
    assert len(agents) == 2
    flow_span_id = flow_run.labels["__OTEL_TRACEPARENT"].split("-")[2]
    for agent in agents:
        task_span = by_id[str(agent.parent_span_id)]
        assert task_span.attributes["prefect.run.type"] == "task" and task_span.name.startswith("seed-")
        assert task_span.parent_span_id == flow_span_id and task_span.trace_id == agent.trace_id


def test_the_cli_generates_through_the_deployment(prefect_stack: LocalStack) -> None:  # noqa: F811
    """`scenarios generate --via-deployment` runs generate/test_dummy on the worker and reads the run back."""
    stack = prefect_stack
    done = stack.run(
        str(Path(".venv/bin/scenarios")), "generate", "--tier", "test_dummy", "--count", "1",
        "--run-id", "cli-e2e", "--via-deployment", timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cli-e2e" in done.stdout
    store = stack.store()
    assert [sid for sid in list_scenarios(store, "staging") if sid.startswith("cli-e2e_")] == ["cli-e2e_0"]
    record = json.loads(store.read_bytes("runs/cli-e2e.json"))
    assert record["run_id"] == "cli-e2e" and [o["passed"] for o in record["outcomes"]] == [True]


@pytest.mark.slow
def test_two_deployment_runs_share_the_four_generation_slots(prefect_stack: LocalStack) -> None:  # noqa: F811
    """Two flow-run processes at once, 4 seeds each: never more than 4 seeds generate at the same time."""
    import subprocess

    stack = prefect_stack
    command = [str(Path(".venv/bin/prefect")), "deployment", "run", "generate/test_dummy", "-p", "count=4", "--watch", "--watch-interval", "1"]
    runs = [subprocess.Popen(command, cwd=REPO, env=stack.env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    slots: list[tuple[datetime, datetime]] = []
    with stack.client() as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

        for output in outputs:
            flow_run_id = output.split("UUID: ", 1)[1].split()[0]
            [table] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
                    key=ArtifactFilterKey(any_=["generated-scenarios"]),
                )
            )
            rows = table.data if isinstance(table.data, list) else json.loads(table.data)
            slots += [(datetime.fromisoformat(r["slot_acquired_at"]), datetime.fromisoformat(r["slot_released_at"])) for r in rows]
    assert len(slots) == 8
    assert 1 < max_overlap(slots) <= 4


def test_a_second_stack_on_a_running_stacks_ports_refuses_before_starting_anything(
    prefect_stack: LocalStack, tmp_path: Path  # noqa: F811
) -> None:
    second = tmp_path / "second-checkout-state"
    env = {**prefect_stack.env, "SCENARIOS_STATE_DIR": str(second)}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "stack.sh"), "up"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    s3_port, prefect_port = env["SCENARIOS_S3_PORT"], env["SCENARIOS_PREFECT_PORT"]
    assert f"S3 server: {s3_port} " in done.stderr and "(move it with SCENARIOS_S3_PORT and SCENARIOS_WEED_PORT_BASE)" in done.stderr
    assert f"Prefect server: {prefect_port} (move it with SCENARIOS_PREFECT_PORT)" in done.stderr
    assert "scripts/stack.sh down" in done.stderr
    assert not second.exists()  # nothing was started, not even its state folder
    with prefect_stack.client() as client:  # the running stack is untouched
        assert client.hello().status_code == 200
