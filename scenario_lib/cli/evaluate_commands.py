"""`scenarios evaluate` and `scenarios demos export`: run policies on a benchmark, and its demonstrations as Minari data."""

from __future__ import annotations

import csv
import io
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from scenario_lib.cli.app import StoreOption, app, fail, load_cli_settings, open_cli_store, run_guarded
from scenario_lib.cli.output import console, error_console, write_json, write_stdout

if TYPE_CHECKING:
    from scenario_lib.envs.benchmark import Benchmark
    from scenario_lib.envs.evaluation import EvaluationRecord

demos_app = typer.Typer(help="The benchmarks' stored demonstrations as offline-RL data.", no_args_is_help=True)
app.add_typer(demos_app, name="demos")

BenchmarkArgument = Annotated[
    str,
    typer.Argument(
        metavar="BENCHMARK",
        help="A benchmark name in the store (see `scenarios list benchmarks`), or the URL of its folder "
        "(file:///.../benchmarks/NAME, s3://bucket/prefix/benchmarks/NAME).",
    ),
]
DEFAULT_EPISODES = 10


class EvaluationFormat(str, Enum):
    """How `scenarios evaluate` prints its figures."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def open_cli_benchmark(benchmark: str, store: str | None) -> Benchmark:
    """The benchmark a command names: by folder URL (its own store), or by name in ``--store`` or the settings'."""
    from scenario_lib.envs.benchmark import open_benchmark

    if "/" in benchmark:
        return run_guarded(lambda: open_benchmark(benchmark, store=store))
    dataset = open_cli_store(load_cli_settings(store_url=store))
    return run_guarded(lambda: open_benchmark(benchmark, store=dataset))


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _print_table(record: EvaluationRecord, stored: str | None) -> None:
    from scenario_lib.envs.evaluation import OVERALL, summary_rows

    table = Table(
        title=f"Evaluation on benchmark {record.benchmark} ({len(record.scenario_ids)} scenarios, "
        f"{len(record.seeds)} episodes each)",
        title_justify="left",
    )
    for column in ("scenario", "family", "policy", "success", "steps to success", "normalized return"):
        table.add_column(column, justify="left" if column in ("scenario", "family", "policy") else "right")
    rows = summary_rows(record)
    order = {scenario_id: index for index, scenario_id in enumerate([*record.scenario_ids, OVERALL])}
    # Grouped by scenario, each policy beside the baselines, the overall figures last.
    rows.sort(key=lambda row: order[row["scenario"]])
    previous = None
    for row in rows:
        if previous is not None and row["scenario"] != previous:
            table.add_section()
        steps = row["mean_steps_to_success"]
        table.add_row(
            row["scenario"] if row["scenario"] != previous else "",
            row["family"] if row["scenario"] != previous else "",
            row["policy"],
            _percent(row["success_rate"]),
            "-" if steps is None else f"{steps:.1f}",
            f"{row['mean_normalized_return']:.3f}",
        )
        previous = row["scenario"]
    console.print(table)
    console.print(
        f"manifest sha256 {record.manifest_sha256[:12]}, seeds {record.seeds[0]}..{record.seeds[-1]}, "
        f"{record.duration_s:.1f} s" + (f"; stored at {stored}" if stored else ""),
        highlight=False,
    )


def _csv(record: EvaluationRecord) -> str:
    from scenario_lib.envs.evaluation import summary_rows

    buffer = io.StringIO()
    rows = summary_rows(record)
    writer = csv.DictWriter(buffer, fieldnames=["benchmark", "manifest_sha256", *rows[0]], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({"benchmark": record.benchmark, "manifest_sha256": record.manifest_sha256, **row})
    return buffer.getvalue()


@app.command()
def evaluate(
    benchmark: BenchmarkArgument,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="module:callable (or path/to/file.py:callable), a factory called as policy = factory(env) at each "
            "episode, then action = policy(observation); or a built-in: zero, random, demo.",
        ),
    ],
    episodes: Annotated[int, typer.Option("--episodes", min=1, max=10_000, help="Episodes per scenario and policy.")] = DEFAULT_EPISODES,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Episode i resets with seed SEED + i.")] = 0,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also run zero, random and demo.")] = True,
    output: Annotated[EvaluationFormat, typer.Option("--format", help="table | json | csv")] = EvaluationFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Store the results under evaluations/BENCHMARK/ in the store.")] = True,
    store: StoreOption = None,
) -> None:
    """Evaluate a policy on every scenario of a benchmark, beside the zero, random and demo baselines.

    Prints the success rate, steps to success and normalized return per scenario and overall, and stores
    the results with the policy name, the benchmark's manifest hash and the seeds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from scenario_lib.envs.evaluation import evaluate_benchmark, store_evaluation
    from scenario_lib.envs.policies import BuiltinPolicy, load_policy

    chosen = run_guarded(lambda: load_policy(policy))
    opened = open_cli_benchmark(benchmark, store)
    policies = [chosen]
    if baselines:
        for builtin in (BuiltinPolicy.ZERO, BuiltinPolicy.RANDOM, BuiltinPolicy.DEMO):
            if builtin.value != chosen[0]:
                policies.append(load_policy(builtin.value))
    total = len(policies) * len(opened.scenario_ids) * episodes
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=error_console,
        transient=True,
        # Only on a terminal: piped or captured, the bar would be an extra block of text on stderr.
        disable=not error_console.is_terminal,
    )
    task = progress.add_task("episodes", total=total)

    def advance(policy_name: str, scenario_id: str) -> None:
        progress.update(task, advance=1, description=f"{policy_name} on {scenario_id}")

    with progress:
        record = run_guarded(
            lambda: evaluate_benchmark(opened, policies, episodes=episodes, base_seed=seed, on_episode=advance)
        )
    stored = run_guarded(lambda: store_evaluation(opened.store, record)) if save else None
    if as_json or output is EvaluationFormat.JSON:
        write_json({**record.model_dump(mode="json"), "stored_at": stored})
    elif output is EvaluationFormat.CSV:
        write_stdout(_csv(record))
    else:
        _print_table(record, stored)


@demos_app.command("export")
def export_command(
    benchmark: BenchmarkArgument,
    out: Annotated[Path, typer.Option("--out", help="The Minari datasets folder to write (MINARI_DATASETS_PATH).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace datasets that exist already.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the datasets written as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Write the stored demonstrations as Minari datasets, one per scenario.

    Minari holds one observation and action space per dataset. Each dataset's episode is the stored
    demonstration replayed through the environment; `minari.load_dataset` reads it offline and
    `recover_environment()` makes the environment again wherever the store is reachable."""
    from scenario_lib.envs.minari_export import MINARI_PATH_VARIABLE, ExportedDataset, export_demonstrations

    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give the folder the Minari datasets go in")
    opened = open_cli_benchmark(benchmark, store)

    def run() -> list[ExportedDataset]:
        return export_demonstrations(opened, out, overwrite=overwrite)

    exported = run_guarded(run)
    rows: list[dict[str, Any]] = [
        {"dataset_id": item.dataset_id, "scenario_id": item.scenario_id, "episodes": item.episodes, "steps": item.steps, "path": str(item.path)}
        for item in exported
    ]
    if as_json:
        write_json({"datasets_path": str(out.resolve()), "datasets": rows})
        return
    table = Table(title=f"Minari datasets of benchmark {opened.dest} in {out.resolve()}", title_justify="left")
    for column in ("dataset", "scenario", "episodes", "steps"):
        table.add_column(column, justify="right" if column in ("episodes", "steps") else "left")
    for row in rows:
        table.add_row(row["dataset_id"], row["scenario_id"], str(row["episodes"]), str(row["steps"]))
    console.print(table)
    first = rows[0]["dataset_id"]
    console.print(
        f"read them with: {MINARI_PATH_VARIABLE}={out.resolve()} python -c \"import minari; "
        f"print(minari.load_dataset('{first}'))\"",
        highlight=False,
        markup=False,
    )
