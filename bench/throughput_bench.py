"""Throughput benchmark: the bars of the throughput issue (#11), measured side by side in one run.

Run with ``make bench-throughput`` (or ``.venv/bin/python bench/throughput_bench.py``). It brings up its
own stack (``scripts/stack.sh up`` on free ports, state in a temporary folder; ``--reuse-stack`` uses
the one ``scripts/stack.sh env`` describes), with the offline author and 8 harness seeds, and measures:

* **CPU per scenario** (in-process CLI ``scenarios generate --tier tier1``): the marginal CPU of every
  process of the path, sandbox children included, from the OS: count ``--cli-count`` (101) minus count
  21, divided by their difference. The issue's count 21 minus count 1 is printed beside it, but a
  count-1 run starts one sandbox worker (a run starts no more than it has seeds at once), so that
  difference also holds the second worker's start-up (~2.6 CPU-s): not a marginal cost.
  Each count runs in its own cgroup (cpuacct) when this machine lets us make one, which counts every
  descendant even if it is never reaped; otherwise from the reaped children's rusage (which misses
  descendants that outlive their parent: the figure is then marked as a lower bound).
* **the machine's limit**: cores divided by that figure, from the same run;
* **the solvability stage's own cost**, beside it: the stage's wall time summed over the harness seeds
  of every scenario of the count-21 run (measured in the check workers, so an upper bound of its CPU);
* **in-process count=1** wall, process start to exit; and the in-process sustained rate: scenarios
  per second between count 21 and count ``--cli-count`` (default 101), against 85 % of the limit;
* **warm tier1 count=10 through the deployment**: ``prefect deployment run generate/tier1 -p count=10
  --watch`` to Completed, and the flow run's own time (start to end in its state history);
* **sustained through the deployment** (``--sustained-count``, default 200; 4 slots): passed per second
  of the flow run's own time, against 70 % of the limit;
* **linearity through the deployment** (``--long-count 1000`` to run it): per-scenario flow time at
  count 1,000 against count 100 (within 15 %);
* **peak memory** of the worker tree (PSS, sampled) in the sustained runs.

Every figure is printed with its ratio to the bar; results go to ``bench/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
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
SCENARIOS = str(REPO / ".venv" / "bin" / "scenarios")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFECT = str(REPO / ".venv" / "bin" / "prefect")
PYTHON = str(REPO / ".venv" / "bin" / "python")
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


def machine_busy_s() -> float:
    """CPU-seconds every core of this machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Runs a command in a cgroup of its own and reads the CPU of it and every descendant from the OS.

    cgroup v1 (``cpuacct``) or v2 (``cpu.stat``), where this process may make a folder; otherwise the
    command's rusage, which counts only descendants reaped by their parents (then ``exact`` is False).
    """

    def __init__(self) -> None:
        self.parent: Path | None = None
        for candidate, usage in ((CGROUP_ROOT / "cpuacct", "cpuacct.usage"), (CGROUP_ROOT, "cpu.stat")):
            if (candidate / usage).exists() and os.access(candidate, os.W_OK):
                self.parent, self.usage_file = candidate, usage
                break

    @property
    def exact(self) -> bool:
        return self.parent is not None

    def _usage_s(self, group: Path) -> float:
        text = (group / self.usage_file).read_text()
        if self.usage_file == "cpuacct.usage":
            return int(text) / 1e9
        return int(re.search(r"^usage_usec (\d+)$", text, flags=re.MULTILINE)[1]) / 1e6  # type: ignore[index]

    def run(self, command: Sequence[str], env: dict[str, str], *, timeout: float) -> tuple[subprocess.CompletedProcess[str], float, float, float]:
        """``(completed, wall_s, cpu_s, peak_pss_mb)`` of ``command``."""
        group = None
        if self.parent is not None:
            group = self.parent / f"throughput-bench-{os.getpid()}-{time.monotonic_ns()}"
            group.mkdir()
            command = ["bash", "-c", 'echo $$ > "$0"; exec "$@"', str(group / "cgroup.procs"), *command]
        started = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with PeakSampler(lambda: tree_pss_mb(process.pid), interval_s=1.0) as memory:
            stdout, stderr = process.communicate(timeout=timeout)
        wall_s = time.perf_counter() - started
        if group is None:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = usage.ru_utime + usage.ru_stime - self._reaped_before
            self._reaped_before += cpu_s
        else:
            deadline = time.monotonic() + 30
            while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.2)  # descendants that outlived the command (a worker shutting down) still count
            cpu_s = self._usage_s(group)
            group.rmdir()
        return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr), wall_s, cpu_s, memory.peak

    _reaped_before = 0.0


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
    machine_cpu_s: float
    result: dict[str, Any]
    task_runs: list[Any]


def run_deployment(stack: Stack, name: str, *params: str) -> DeploymentRun:
    """``prefect deployment run NAME -p … --watch``, timed, with the worker tree's CPU and memory."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    worker, server, service = stack.pid("worker"), stack.pid("prefect-server"), stack.pid("validation")
    command = [PREFECT, "deployment", "run", name, "--watch", "--watch-interval", "1"]
    for param in params:
        command += ["-p", param]
    cpu0, server0, machine0 = tree_cpu_s(worker) + tree_cpu_s(service), tree_cpu_s(server), machine_busy_s()
    started = time.perf_counter()
    with PeakSampler(lambda: tree_pss_mb(worker) + tree_pss_mb(service), interval_s=2.0) as memory:
        done = stack.run(*command, timeout=3600)
    wall_s = time.perf_counter() - started
    output = done.stdout + done.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    if match is None:
        raise SystemExit(f"{name}: no flow run created:\n{output}")
    flow_run_id = UUID(match[1])
    time.sleep(1.5)  # let the worker reap the flow-run process, so its CPU lands in the worker's child times
    cpu1, server1, machine1 = tree_cpu_s(worker) + tree_cpu_s(service), tree_cpu_s(server), machine_busy_s()
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
        machine_cpu_s=machine1 - machine0,
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


# In-process CLI


@dataclass
class CliRun:
    count: int
    passed: int
    wall_s: float
    cpu_s: float
    peak_pss_mb: float
    solvability_s: float  # the solvability stage's wall time, summed over every seed of every scenario


def run_cli(meter: CpuMeter, count: int, env: dict[str, str]) -> CliRun:
    """``scenarios generate --tier tier1 --count COUNT`` into a fresh local store, from process start to exit."""
    store = Path(tempfile.mkdtemp(prefix="throughput-store-"))
    command = [SCENARIOS, "generate", "--tier", "tier1", "--count", str(count), "--store", f"file://{store}", "--json"]
    done, wall_s, cpu_s, peak = meter.run(command, env, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"in-process count={count} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    solvability_s = 0.0
    for report in store.glob("staging/*/validation.json"):
        for seed in json.loads(report.read_text())["seeds"]:
            solvability_s += sum(stage["duration_s"] for stage in seed["stages"] if stage["stage"] == "solvability")
    passed = sum(1 for outcome in summary["outcomes"] if outcome["passed"])
    run = CliRun(count, passed, wall_s, cpu_s, peak, solvability_s)
    print(f"  in-process count={count}: {passed} passed, {wall_s:.1f} s wall, {cpu_s:.1f} CPU-s", flush=True)
    return run


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCENARIOS_"))}
    return {**env, **BENCH_SETTINGS}


# Report


def print_table(rows: Sequence[Row]) -> None:
    header = f"{'figure':<62} {'value':>10} {'unit':<13} {'bar':>10} {'ratio':>7}  {'':<6} note"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        value = "n/a" if row.figure is None else f"{row.figure:.3g}" if abs(row.figure) < 1000 else f"{row.figure:.0f}"
        bar = row.bar.describe() if row.bar else ""
        ratio = f"{row.bar.ratio(row.figure):.2f}" if row.bar and row.figure is not None else ""
        verdict = "" if not row.bar or row.figure is None else ("ok" if row.bar.met(row.figure) else "MISSED")
        print(f"{row.name:<62} {value:>10} {row.unit:<13} {bar:>10} {ratio:>7}  {verdict:<6} {row.note}")


def build_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse-stack", action="store_true", help="use the running stack of `scripts/stack.sh env`")
    parser.add_argument("--cli-count", type=int, default=101, help="count of the in-process sustained run (default 101)")
    parser.add_argument("--sustained-count", type=int, default=200, help="count of the sustained deployment run (default 200)")
    parser.add_argument("--long-count", type=int, default=0, help="run count 100 and this count through the deployment (1000)")
    parser.add_argument("--no-deployment", action="store_true", help="measure the in-process path only (no stack)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def in_process_rows(meter: CpuMeter, cli_count: int, results: dict[str, Any]) -> tuple[list[Row], float]:
    """The in-process figures; returns them and the machine's limit (scenarios/s)."""
    env = cli_env()
    print("in-process CLI: count=1, 21 and", cli_count, flush=True)
    one, twenty_one, long = run_cli(meter, 1, env), run_cli(meter, 21, env), run_cli(meter, cli_count, env)
    results["in_process"] = [vars(run) for run in (one, twenty_one, long)]
    bound = "" if meter.exact else " (rusage: a lower bound)"
    extra = long.count - twenty_one.count
    marginal = (long.cpu_s - twenty_one.cpu_s) / extra
    solvability = (long.solvability_s - twenty_one.solvability_s) / extra
    cores = len(os.sched_getaffinity(0))
    limit = cores / marginal
    sustained = (long.passed - twenty_one.passed) / (long.wall_s - twenty_one.wall_s)
    rows = [
        Row(f"in-process CPU per scenario, all stages (count {long.count} - count 21)", marginal, "CPU-s",
            note=f"{long.cpu_s:.1f} - {twenty_one.cpu_s:.1f} CPU-s over {extra}, every process{bound}"),
        Row("  the issue's count 21 - count 1 (count 1 starts 1 sandbox worker, not 2)", (twenty_one.cpu_s - one.cpu_s) / 20,
            "CPU-s", note=f"{twenty_one.cpu_s:.1f} - {one.cpu_s:.1f} CPU-s over 20"),
        Row("  of which the solvability stage (its wall in the check workers)", solvability, "CPU-s",
            note=f"{HARNESS_SEEDS} seeds a scenario; an upper bound of its CPU"),
        Row("  the stages of the issue's day (all minus solvability)", marginal - solvability, "CPU-s", Bar(0.45)),
        Row("the machine's limit (cores / CPU per scenario)", limit, "scenarios/s", note=f"{cores} cores"),
        Row("in-process count=1, process start to exit", one.wall_s, "s", Bar(6)),
        Row(f"in-process sustained (count {long.count} - count 21), % of the limit", 100 * sustained / limit, "%",
            Bar(85, at_most=False), f"{sustained:.2f} scenarios/s; {long.passed}/{long.count} passed in {long.wall_s:.0f} s"),
        Row(f"peak memory of the in-process tree at count {long.count} (PSS)", long.peak_pss_mb, "MiB"),
    ]
    return rows, limit


def deployment_rows(stack: Stack, limit: float, args: argparse.Namespace, results: dict[str, Any]) -> list[Row]:
    print("warm-up run (generate/test_dummy count=1)…", flush=True)
    run_deployment(stack, "generate/test_dummy", "count=1")
    print("generate/tier1 count=10…", flush=True)
    ten = run_deployment(stack, "generate/tier1", "count=10")
    print(f"  {ten.state}: {ten.wall_s:.1f} s command to final state, flow {ten.flow_s:.1f} s", flush=True)
    print(f"generate/tier1 count={args.sustained_count} (4 slots)…", flush=True)
    big = run_deployment(stack, "generate/tier1", f"count={args.sustained_count}")
    passed, tried = passed_count(big)
    rate = passed / big.flow_s
    print(f"  {big.state}: {passed}/{tried} passed, flow {big.flow_s:.1f} s", flush=True)
    outside = outside_slot_s(big)
    seed_task_runs = [t for t in big.task_runs if t.name.startswith("seed-")]
    rows = [
        Row("deployment tier1 count=10: `deployment run` -> Completed (warm)", ten.wall_s, "s", Bar(15), ten.state),
        Row("deployment tier1 count=10: the flow run's own time", ten.flow_s, "s", Bar(5)),
        Row(f"deployment sustained count={args.sustained_count}, % of the limit", 100 * rate / limit, "%",
            Bar(70, at_most=False), f"{rate:.2f} scenarios/s; {passed}/{tried} passed in {big.flow_s:.0f} s (flow)"),
        Row("  machine CPU per scenario through the deployment", big.machine_cpu_s / max(1, passed), "CPU-s",
            note="/proc/stat, every process of the machine"),
        Row("  Prefect server CPU per seed task run", big.server_cpu_s / max(1, len(seed_task_runs)), "CPU-s"),
        Row("  task-run wall outside its slot (median)", median(outside) if outside else None, "s"),
        Row("  peak memory of the worker and validation-service trees (PSS)", big.peak_pss_mb, "MiB"),
    ]
    runs = {"tier1_10": ten, "tier1_sustained": big}
    if args.long_count:
        print(f"linearity through the deployment: count=100 and count={args.long_count}…", flush=True)
        hundred = run_deployment(stack, "generate/tier1", "count=100")
        thousand = run_deployment(stack, "generate/tier1", f"count={args.long_count}")
        per_100 = hundred.flow_s / max(1, passed_count(hundred)[0])
        per_long = thousand.flow_s / max(1, passed_count(thousand)[0])
        rows.append(Row(f"deployment per-scenario time, count {args.long_count} / count 100", per_long / per_100, "x",
                        Bar(1.15), f"{per_long:.3f} s vs {per_100:.3f} s a scenario (flow time / passed)"))
        runs |= {"tier1_100": hundred, f"tier1_{args.long_count}": thousand}
    results["deployment"] = {
        name: {k: v for k, v in vars(run).items() if k not in ("task_runs", "result")} | {"flow_run_id": str(run.flow_run_id)}
        for name, run in runs.items()
    }
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arguments(argv)
    meter = CpuMeter()
    results: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
        "cpu_accounting": "cgroup" if meter.exact else "rusage (lower bound)",
    }
    rows, limit = in_process_rows(meter, args.cli_count, results)
    if not args.no_deployment:
        print("starting the stack…", flush=True)
        stack = start_stack(args.reuse_stack)
        results["stack_up_s"] = stack.up_s
        try:
            rows += deployment_rows(stack, limit, args, results)
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
