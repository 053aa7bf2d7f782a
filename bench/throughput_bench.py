"""Throughput benchmark: the generate deployment end to end on a local stack, against the bars of issue 6.

Run with ``make bench-throughput`` (or ``.venv/bin/python bench/throughput_bench.py``). It brings up its
own stack (``scripts/stack.sh up`` on free ports, state in a temporary folder; ``--reuse-stack`` uses
the one ``scripts/stack.sh env`` describes instead), with production validation settings (8 harness
seeds, 2 sandbox workers per flow run) and the offline author, and measures in one run:

* **warm tier1 count=10**: wall time from ``prefect deployment run generate/tier1 -p count=10 --watch``
  to Completed, and the flow run's own time (its start to end in the API), after one warm-up run;
* **sustained count=N** (``--sustained-count``, default 200; 4 slots): scenarios passed per second of
  the flow run's own time;
* **CPU per validated scenario-seed**: CPU of the worker's process tree (flow-run process, sandbox
  workers, forked build jobs: all reaped into the worker's child times) during the sustained run,
  divided by the (scenario, harness seed) pairs validated (each tried seed validates ``harness`` seeds
  plus one probe build), against the issue's floor of 0.1 CPU-s per validated scenario-seed;
* **Prefect overhead per task run**: the Prefect server's CPU per task run, and the wall time a task
  run spends outside its generation slot (task-run start to end minus the slot-held interval);
* **peak memory of the worker pool**: the largest sum of PSS over the worker's process tree, sampled;
* **linearity**: wall time and CPU for the ``--series`` counts (default 10, 100, 1000) on the
  in-process path (`run_generation` with the same settings and a local store; no Prefect), so the
  series measures the library's cost growth apart from orchestration;
* **cold demo**: with ``--cold-demo``, ``git clone`` of this checkout's HEAD and ``make demo`` in it
  (installs included, on free ports); otherwise an estimate from the parts measured here plus the
  install time given by ``--install-s`` (measured separately, default 90 s).

Every figure is printed with its ratio to the bar; results go to ``bench/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any
from uuid import UUID

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.prefect_stack import STACK, free_port, free_port_block  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "throughput.json"
PREFECT = str(REPO / ".venv" / "bin" / "prefect")
PYTHON = str(REPO / ".venv" / "bin" / "python")
FLOOR_CPU_PER_SEED_S = 0.1  # the floor per validated scenario-seed (0.1-0.2 s); the strict end
HARNESS_SEEDS = 8
BENCH_SETTINGS = {"SCENARIOS_LLM__PROVIDER": "offline", "SCENARIOS_VALIDATION__SEEDS": str(HARNESS_SEEDS)}


@dataclass(frozen=True)
class Bar:
    """A bar: ``figure <= limit`` (at_most) or ``figure >= limit``."""

    limit: float
    at_most: bool = True

    def ratio(self, figure: float) -> float:
        return figure / self.limit

    def met(self, figure: float) -> bool:
        return figure <= self.limit if self.at_most else figure >= self.limit

    def describe(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.limit:g}"


@dataclass
class Row:
    name: str
    figure: float | None
    unit: str
    bar: Bar | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figure": self.figure,
            "unit": self.unit,
            "bar": self.bar.describe() if self.bar else None,
            "ratio_to_bar": round(self.bar.ratio(self.figure), 3) if self.bar and self.figure is not None else None,
            "met": self.bar.met(self.figure) if self.bar and self.figure is not None else None,
            "note": self.note,
        }


# Process accounting


def tree_cpu_s(pid: int) -> float:
    """CPU of a process, its reaped descendants and its live descendants (user + system)."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
            except psutil.Error:
                continue
        return total
    except psutil.Error:
        return 0.0


def tree_pss_mb(pid: int) -> float:
    total = 0
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return total / 2**20


class PeakSampler:
    """Samples ``measure()`` every ``interval_s`` on a thread and keeps the peak."""

    def __init__(self, measure: Callable[[], float], interval_s: float = 1.0) -> None:
        self.measure, self.interval_s, self.peak = measure, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.measure())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The stack


@dataclass
class Stack:
    env: dict[str, str]
    state_dir: Path
    owned: bool
    up_s: float = 0.0

    def pid(self, name: str) -> int:
        return int((self.state_dir / f"{name}.pid").read_text().strip())

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def down(self) -> None:
        if self.owned:
            subprocess.run(["bash", str(STACK), "down"], env=self.env, capture_output=True, timeout=120, check=False)


def stack_env(base: dict[str, str]) -> dict[str, str]:
    printed = subprocess.run(["bash", str(STACK), "env"], env=base, capture_output=True, text=True, check=True).stdout
    return {**base, **dict(re.findall(r"^export ([A-Z0-9_]+)=(.*)$", printed, flags=re.MULTILINE))}


def start_stack(reuse: bool) -> Stack:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCENARIOS_"))}
    if reuse:
        env = stack_env({**inherited, **BENCH_SETTINGS})
        return Stack(env=env, state_dir=Path(env["SCENARIOS_STATE_DIR"]), owned=False)
    state = Path(tempfile.mkdtemp(prefix="throughput-stack-"))
    base = {
        **inherited,
        **BENCH_SETTINGS,
        "SCENARIOS_STATE_DIR": str(state),
        "SCENARIOS_PREFECT_PORT": str(free_port()),
        "SCENARIOS_S3_PORT": str(free_port_block(1)),
        "SCENARIOS_WEED_PORT_BASE": str(free_port_block(4)),
    }
    started = time.perf_counter()
    up = subprocess.run(["bash", str(STACK), "up"], env=base, capture_output=True, text=True, timeout=300)
    stack = Stack(env=stack_env(base), state_dir=state, owned=True, up_s=time.perf_counter() - started)
    if up.returncode != 0:
        stack.down()
        raise SystemExit(f"scripts/stack.sh up failed:\n{up.stdout}\n{up.stderr}")
    return stack


# Deployment runs


@dataclass
class DeploymentRun:
    flow_run_id: UUID
    wall_s: float
    flow_s: float
    state: str
    worker_cpu_s: float
    server_cpu_s: float
    peak_pss_mb: float
    result: dict[str, Any]
    task_runs: list[Any]


def run_deployment(stack: Stack, name: str, *params: str) -> DeploymentRun:
    """``prefect deployment run NAME -p … --watch``, timed, with the worker tree's CPU and memory."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    worker, server = stack.pid("worker"), stack.pid("prefect-server")
    command = [PREFECT, "deployment", "run", name, "--watch", "--watch-interval", "1"]
    for param in params:
        command += ["-p", param]
    cpu0, server0 = tree_cpu_s(worker), tree_cpu_s(server)
    started = time.perf_counter()
    with PeakSampler(lambda: tree_pss_mb(worker), interval_s=2.0) as memory:
        done = stack.run(*command, timeout=3600)
    wall_s = time.perf_counter() - started
    output = done.stdout + done.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    if match is None:
        raise SystemExit(f"{name}: no flow run created:\n{output}")
    flow_run_id = UUID(match[1])
    time.sleep(1.5)  # let the worker reap the flow-run process, so its CPU lands in the worker's child times
    cpu1, server1 = tree_cpu_s(worker), tree_cpu_s(server)
    with SyncPrefectClient(stack.env["PREFECT_API_URL"]) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs: list[Any] = []
        while page := client.read_task_runs(  # the API returns at most 200 a call
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200, offset=len(task_runs)
        ):
            task_runs += page
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=["generated-scenarios"]),
            )
        )
    rows = artifacts[0].data if artifacts else []
    rows = json.loads(rows) if isinstance(rows, str) else rows
    flow_s = (flow_run.end_time - flow_run.start_time).total_seconds() if flow_run.end_time and flow_run.start_time else float("nan")
    return DeploymentRun(
        flow_run_id=flow_run_id,
        wall_s=wall_s,
        flow_s=flow_s,
        state=str(flow_run.state.name) if flow_run.state else "unknown",
        worker_cpu_s=cpu1 - cpu0,
        server_cpu_s=server1 - server0,
        peak_pss_mb=memory.peak,
        result={"rows": rows},
        task_runs=list(task_runs),
    )


def passed_count(run: DeploymentRun) -> tuple[int, int]:
    rows = run.result["rows"]
    return sum(1 for row in rows if row.get("result") == "passed"), len(rows)


def outside_slot_s(run: DeploymentRun) -> list[float]:
    """Per seed task run: its wall time minus the time it held a generation slot."""
    slots = {}
    for row in run.result["rows"]:
        if row.get("slot_acquired_at") and row.get("slot_released_at"):
            held = datetime.fromisoformat(row["slot_released_at"]) - datetime.fromisoformat(row["slot_acquired_at"])
            slots[f"seed-{row.get('seed')}"] = held.total_seconds()
    values = []
    for task_run in run.task_runs:
        if task_run.name in slots and task_run.start_time and task_run.end_time:
            values.append((task_run.end_time - task_run.start_time).total_seconds() - slots[task_run.name])
    return values


# In-process series


def in_process_series(counts: Sequence[int], env: dict[str, str]) -> list[dict[str, Any]]:
    """`run_generation` for each count in a fresh process per count: wall, CPU, rate."""
    results = []
    for count in counts:
        store = tempfile.mkdtemp(prefix="throughput-store-")
        code = f"""
import json, sys, time, psutil
sys.path.insert(0, {str(REPO)!r})
from scenario_lib.config import load_settings
from scenario_lib.runs.generation import GenerationJob, new_run_id, open_generation_context
from scenario_lib.runs.driver import run_generation
from scenario_lib.tiers import Tier
def cpu():
    p = psutil.Process(); t = p.cpu_times(); s = t.user + t.system + t.children_user + t.children_system
    for c in p.children(recursive=True):
        try: ct = c.cpu_times(); s += ct.user + ct.system
        except psutil.Error: pass
    return s
with open_generation_context(load_settings()) as context:
    context.validator.pool.warm_up()
    c0, t0 = cpu(), time.perf_counter()
    summary = run_generation(context, GenerationJob(run_id=new_run_id(Tier.TIER1), tier=Tier.TIER1, count={count}), max_concurrency=4)
    c1, t1 = cpu(), time.perf_counter()
print(json.dumps({{"count": {count}, "passed": summary.passed, "seeds": len(summary.outcomes), "wall_s": t1 - t0, "cpu_s": c1 - c0}}))
"""
        env_local = {**env, "SCENARIOS_STORE__URL": f"file://{store}"}
        for key in ("SCENARIOS_STORE__ENDPOINT_URL", "SCENARIOS_STORE__ACCESS_KEY", "SCENARIOS_STORE__SECRET_KEY"):
            env_local.pop(key, None)
        done = subprocess.run([PYTHON, "-c", code], env=env_local, cwd=REPO, capture_output=True, text=True, timeout=7200)
        if done.returncode != 0:
            results.append({"count": count, "error": done.stderr[-2000:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["scenarios_per_s"] = result["passed"] / result["wall_s"]
        result["cpu_per_scenario_s"] = result["cpu_s"] / result["seeds"]
        results.append(result)
        print(f"  in-process count={count}: {result['wall_s']:.1f} s, {result['scenarios_per_s']:.2f}/s, "
              f"{result['cpu_per_scenario_s']:.3f} CPU-s per seed", flush=True)  # fmt: skip
    return results


# Cold demo


def cold_demo() -> tuple[float, str]:
    """``git clone`` HEAD into a temporary folder and time ``make demo`` there (installs included) on free ports."""
    folder = Path(tempfile.mkdtemp(prefix="throughput-clone-")) / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(folder)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCENARIOS_", "VIRTUAL_ENV"))}
    env.update({
        "SCENARIOS_PREFECT_PORT": str(free_port()),
        "SCENARIOS_S3_PORT": str(free_port_block(1)),
        "SCENARIOS_WEED_PORT_BASE": str(free_port_block(4)),
    })  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(["make", "demo"], cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    subprocess.run(["make", "down"], cwd=folder, env=env, capture_output=True, timeout=120, check=False)
    return elapsed, f"rc={done.returncode}; clone at {folder}"


# Report


def print_table(rows: Sequence[Row]) -> None:
    header = f"{'figure':<58} {'value':>12} {'unit':<14} {'bar':>10} {'ratio':>7}  {'':<6} note"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        value = "n/a" if row.figure is None else f"{row.figure:.3g}" if abs(row.figure) < 1000 else f"{row.figure:.0f}"
        bar = row.bar.describe() if row.bar else ""
        ratio = f"{row.bar.ratio(row.figure):.2f}" if row.bar and row.figure is not None else ""
        verdict = "" if not row.bar or row.figure is None else ("ok" if row.bar.met(row.figure) else "MISSED")
        print(f"{row.name:<58} {value:>12} {row.unit:<14} {bar:>10} {ratio:>7}  {verdict:<6} {row.note}")


def build_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse-stack", action="store_true", help="use the running stack of `scripts/stack.sh env`")
    parser.add_argument("--sustained-count", type=int, default=200, help="count of the sustained run (default 200)")
    parser.add_argument("--series", default="10,100,1000", help="counts of the in-process linearity series ('' skips)")
    parser.add_argument("--cold-demo", action="store_true", help="time `make demo` in a fresh clone (installs too)")
    parser.add_argument("--install-s", type=float, default=90.0, help="install time used by the cold-demo estimate")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arguments(argv)
    series_counts = [int(c) for c in args.series.split(",") if c.strip()]
    print("starting the stack…", flush=True)
    stack = start_stack(args.reuse_stack)
    rows: list[Row] = []
    results: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
        "stack_up_s": stack.up_s,
    }
    try:
        print("warm-up run (generate/test_dummy count=1)…", flush=True)
        run_deployment(stack, "generate/test_dummy", "count=1")
        print("generate/tier1 count=10…", flush=True)
        ten = run_deployment(stack, "generate/tier1", "count=10")
        print(f"  {ten.state}: {ten.wall_s:.1f} s command to final state, flow {ten.flow_s:.1f} s", flush=True)
        print(f"generate/tier1 count={args.sustained_count} (4 slots)…", flush=True)
        big = run_deployment(stack, "generate/tier1", f"count={args.sustained_count}")
        passed, tried = passed_count(big)
        print(f"  {big.state}: {passed}/{tried} passed, flow {big.flow_s:.1f} s", flush=True)
        rate = passed / big.flow_s
        validated_pairs = tried * (HARNESS_SEEDS + 1)
        cpu_per_pair = big.worker_cpu_s / validated_pairs
        seed_task_runs = [t for t in big.task_runs if t.name.startswith("seed-")]
        outside = outside_slot_s(big)
        rows += [
            Row("tier1 count=10: deployment run → Completed (warm stack)", ten.wall_s, "s", Bar(20), ten.state),
            Row("tier1 count=10: the flow run's own time", ten.flow_s, "s", Bar(5)),
            Row(f"sustained: count={args.sustained_count}, 4 slots, 8-seed harness", rate, "scenarios/s", Bar(5, at_most=False),
                f"{passed}/{tried} passed in {big.flow_s:.0f} s (flow); {big.wall_s:.0f} s end to end"),
            Row("CPU per validated scenario-seed (worker tree)", cpu_per_pair, "CPU-s", Bar(3 * FLOOR_CPU_PER_SEED_S),
                f"{big.worker_cpu_s:.0f} CPU-s / {validated_pairs} (seed, harness seed) pairs; "
                f"{big.worker_cpu_s / tried:.3f} CPU-s per scenario; floor {FLOOR_CPU_PER_SEED_S} → bar 3×"),
            Row("Prefect server CPU per task run", big.server_cpu_s / max(1, len(seed_task_runs)), "CPU-s",
                note=f"{big.server_cpu_s:.1f} CPU-s over {len(seed_task_runs)} task runs"),
            Row("task-run wall outside its slot (median)", median(outside) if outside else None, "s",
                note=f"p90 {sorted(outside)[int(0.9 * (len(outside) - 1))]:.2f} s" if outside else ""),
            Row("peak memory of the worker pool (PSS, worker tree)", big.peak_pss_mb, "MiB"),
        ]
        results["runs"] = {
            "tier1_10": {k: v for k, v in vars(ten).items() if k not in ("task_runs", "result")} | {"flow_run_id": str(ten.flow_run_id)},
            "tier1_sustained": {k: v for k, v in vars(big).items() if k not in ("task_runs", "result")} | {"flow_run_id": str(big.flow_run_id), "passed": passed, "tried": tried},
        }
        if series_counts:
            print(f"linearity series (in-process run_generation): {series_counts}…", flush=True)
            series = in_process_series(series_counts, stack.env)
            results["series"] = series
            ok = [s for s in series if "wall_s" in s]
            for entry in ok:
                rows.append(Row(f"linearity (in-process): count={entry['count']} wall", entry["wall_s"], "s",
                                note=f"{entry['wall_s'] / entry['count']:.3f} s/scenario, {entry['cpu_per_scenario_s']:.3f} CPU-s/seed"))
        demo_s = demo_note = None
        if args.cold_demo:
            print("cold make demo in a fresh clone…", flush=True)
            demo_s, demo_note = cold_demo()
        elif stack.owned:
            demo_s = args.install_s + stack.up_s + ten.wall_s
            demo_note = f"estimate: install {args.install_s:.0f} s (--install-s) + stack up {stack.up_s:.0f} s + tier1 count=10 {ten.wall_s:.0f} s"
        rows.append(Row("cold `make demo` from a fresh clone", demo_s, "s", Bar(300), demo_note or "not measured"))
    finally:
        stack.down()
    print_table(rows)
    results["rows"] = [row.as_dict() for row in rows]
    results["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
