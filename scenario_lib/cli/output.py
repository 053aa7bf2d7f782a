"""What the commands print: the consoles, validation reports, tables, sizes and machine-readable output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from scenario_lib.cli.analysis_tables import TableData
    from scenario_lib.runs.generation import RunSummary, SeedOutcome
    from scenario_lib.report import ValidationReport
    from scenario_lib.store.dataset import DatasetStore

console = Console()
error_console = Console(stderr=True)


class OutputFormat(str, Enum):
    """How `analyze` and `compare` print their tables."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


def write_stdout(text: str) -> None:
    """Plain text on stdout, bypassing Rich (no wrapping or markup): for JSON, CSV and Markdown."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def write_json(payload: Any) -> None:
    write_stdout(json.dumps(payload, indent=2, default=str))


def human_size(size_bytes: int) -> str:
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def print_report(report: ValidationReport, *, title: str) -> None:
    """A Rich table of stage verdicts per (seed, scale), then the per-stage pass rates."""
    from scenario_lib.report import STAGE_ORDER, Verdict

    marks = {
        Verdict.PASS: "[green]pass[/]",
        Verdict.FAIL: "[red]FAIL[/]",
        Verdict.SKIPPED: "[dim]-[/]",
        Verdict.NOT_APPLICABLE: "[dim]n/a[/]",
    }
    table = Table(title=f"Validation of {title}")
    table.add_column("seed", justify="right")
    table.add_column("scale")
    for stage in STAGE_ORDER:
        table.add_column(stage.value)
    for seed_report in report.seeds:
        verdicts = {result.stage: marks[result.verdict] for result in seed_report.stages}
        scale = " ".join(f"{value:.2f}" for value in seed_report.scale)
        table.add_row(str(seed_report.seed), scale, *(verdicts.get(stage, "") for stage in STAGE_ORDER))
    console.print(table)
    def rate(stage: object) -> str:
        verdicts = {result.verdict for seed in report.seeds for result in seed.stages if result.stage is stage}
        return "n/a" if verdicts == {Verdict.NOT_APPLICABLE} else f"{report.pass_rate(stage):.0%}"  # type: ignore[arg-type]

    rates = ", ".join(f"{stage.value} {rate(stage)}" for stage in STAGE_ORDER)
    console.print(f"pass rate per stage: {rates}  ({report.duration_s:.2f} s)")
    style = "green" if report.passed else "red"
    console.print(f"[{style}]{report.summary()}[/]", highlight=False)
    failure = report.first_failure
    if failure is not None:
        console.print(
            f"first failure (seed {failure[0].seed}, {failure[1].stage.value}): {failure[1].message}", markup=False
        )


def print_tables(tables: Sequence[TableData], *, target: Console | None = None) -> None:
    """Render `TableData` tables with Rich."""
    from scenario_lib.cli.analysis_tables import format_value

    for data in tables:
        table = Table(title=data.title, title_justify="left")
        for index, column in enumerate(data.columns):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in data.rows:
            table.add_row(*(format_value(value) for value in row))
        (target or console).print(table)


def failure_label(outcome: SeedOutcome) -> str:
    """The stage a failed seed failed at (review when the reviewer rejected every attempt)."""
    failed = next((stage for stage, verdict in outcome.stage_verdicts.items() if verdict == "fail"), None)
    return failed or outcome.stage_reached or "unknown"


def print_run_summary(summary: RunSummary, store: DatasetStore, *, target: Console | None = None) -> None:
    """The end-of-run table: per-stage counts, yield, time, tokens and where the files are."""
    from scenario_lib.report import Stage

    out = target or console
    counts = summary.stage_counts()
    rejected = sum(1 for o in summary.outcomes if o.stage_reached is Stage.REVIEW and not o.stage_verdicts)
    out.print(f"[bold]Run {summary.run_id}[/]", highlight=False)
    table = Table()
    table.add_column("stage")
    table.add_column("passed", justify="right")
    table.add_column("failed", justify="right")
    table.add_row(Stage.REVIEW.value, str(len(summary.outcomes) - rejected), str(rejected))
    for stage, count in counts.items():
        table.add_row(stage, str(count.passed), str(count.failed))
    out.print(table)
    seeds = len(summary.outcomes)
    reused = sum(o.reused for o in summary.outcomes)
    tokens = sum(o.input_tokens + o.output_tokens for o in summary.outcomes)
    costs = [o.cost_usd for o in summary.outcomes if not o.reused]
    cost = "unknown" if any(c is None for c in costs) else f"${sum(c or 0.0 for c in costs):.4f}"
    yield_rate = f"{summary.passed / seeds:.0%}" if seeds else "-"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("accepted", f"{summary.passed}/{summary.count} ({'complete' if summary.complete else 'INCOMPLETE'})")
    facts.add_row("yield", f"{summary.passed}/{seeds} seeds ({yield_rate}){f', {reused} reused' if reused else ''}")
    facts.add_row("time", f"{summary.duration_s:.1f} s")
    facts.add_row("tokens", f"{tokens} ({cost})")
    facts.add_row("model", f"{summary.provider}:{summary.model or 'default'}")
    facts.add_row("scenarios", f"{store.url_for('staging')}/{summary.run_id}_*")
    if summary.failed:
        facts.add_row("failures", f"{store.url_for('failures')}/{summary.run_id}_*")
    facts.add_row("record", store.url_for(f"runs/{summary.run_id}.json"))
    out.print(facts)
