"""The analysis as tables (Rich, Markdown or CSV) and PNG charts: the CLI's presentation of
`scenario_lib.insight.analysis` and `scenario_lib.insight.comparison`. matplotlib is imported only
when a chart is drawn.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenario_lib.insight.analysis import AnalysisReport, GroupStats
from scenario_lib.insight.comparison import Comparison


@dataclass(frozen=True)
class TableData:
    """A titled table of plain values, rendered as Rich, Markdown or CSV by the caller."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def to_markdown(self) -> str:
        def cell(value: Any) -> str:
            return format_value(value).replace("|", "\\|")

        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in self.rows)
        return "\n".join(lines) + "\n"


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def tables_to_csv(tables: Sequence[TableData]) -> str:
    """One long CSV: ``table, row, column, value`` per cell, so tables of different shapes fit one file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "row", "column", "value"])
    for table in tables:
        for row in table.rows:
            for column, value in zip(table.columns[1:], row[1:]):
                writer.writerow([table.title, row[0], column, "" if value is None else value])
    return buffer.getvalue()


_GROUP_COLUMNS = (
    "group",
    "runs",
    "seeds",
    "accepted",
    "yield",
    "attempts/accepted",
    "s/accepted",
    "tokens/accepted",
    "USD/accepted",
)


def _group_rows(groups: Sequence[GroupStats]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (
            group.key,
            group.runs,
            group.seeds,
            group.accepted,
            group.yield_rate,
            group.attempts_per_accepted,
            group.time_per_accepted_s,
            group.tokens_per_accepted,
            group.cost_per_accepted_usd,
        )
        for group in groups
    )


def report_tables(report: AnalysisReport) -> list[TableData]:
    """The report as tables: overview, stages, groups, stage times, coverage and diversity."""
    tables = [
        TableData(
            "Overview",
            ("measure", "value"),
            (
                ("runs", len(report.runs)),
                ("seeds", report.seeds),
                ("accepted", report.accepted),
                ("yield", report.yield_rate),
                ("diversity (mean pairwise distance)", report.diversity.mean_pairwise_distance),
                ("family entropy", report.diversity.family_entropy),
            ),
        ),
        TableData(
            "Yield per stage",
            ("stage", "reached", "passed", "failed", "yield", "cumulative"),
            tuple((s.stage, s.reached, s.passed, s.failed, s.yield_rate, s.cumulative_rate) for s in report.stages),
        ),
        TableData("Per tier", _GROUP_COLUMNS, _group_rows(report.by_tier)),
        TableData("Per family", _GROUP_COLUMNS, _group_rows(report.by_family)),
        TableData("Per provider:model", _GROUP_COLUMNS, _group_rows(report.by_model)),
    ]
    if report.by_temperature:
        tables.append(TableData("Per temperature", _GROUP_COLUMNS, _group_rows(report.by_temperature)))
    if report.by_experiment:
        tables.append(TableData("Per experiment", _GROUP_COLUMNS, _group_rows(report.by_experiment)))
    if report.stage_times:
        tables.append(
            TableData(
                "Validation time per stage",
                ("stage", "scenarios", "mean s", "total s"),
                tuple((t.stage, t.scenarios, t.mean_s, t.total_s) for t in report.stage_times),
            )
        )
    if report.coverage:
        tables.append(
            TableData(
                "Parameter coverage",
                ("family/parameter", "accepted", "low", "high", "bins filled", "coverage"),
                tuple(
                    (f"{c.family}/{c.parameter}", c.accepted, c.low, c.high, f"{c.bins_filled}/{c.bins}", c.coverage)
                    for c in report.coverage
                ),
            )
        )
    tables.append(
        TableData(
            "Diversity per family",
            ("family", "mean pairwise distance"),
            tuple(sorted(report.diversity.per_family.items())),
        )
    )
    return tables


def comparison_tables(comparisons: Sequence[Comparison]) -> list[TableData]:
    tables = []
    for comparison in comparisons:
        tables.append(
            TableData(f"{comparison.tier}: per {comparison.by.value}", _GROUP_COLUMNS, _group_rows(comparison.groups))
        )
        tables.append(
            TableData(
                f"{comparison.tier}: tests",
                ("metric", "test", "groups", "statistic", "p-value", "note"),
                tuple(
                    (test.metric, test.test, " vs ".join(test.groups), test.statistic, test.p_value, test.note)
                    for test in comparison.tests
                ),
            )
        )
    return tables


def write_plots(report: AnalysisReport, folder: Path) -> list[Path]:
    """PNG charts of ``report`` in ``folder``: yield by stage, time per stage, diversity per family."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    stages = [row.stage for row in report.stages]
    axes.bar(stages, [row.passed for row in report.stages], label="passed", color="tab:green")
    axes.bar(
        stages,
        [row.failed for row in report.stages],
        bottom=[row.passed for row in report.stages],
        label="failed",
        color="tab:red",
    )
    axes.set_ylabel("seeds")
    axes.set_title(f"Yield by stage ({report.accepted}/{report.seeds} seeds accepted)")
    axes.legend()
    path = folder / "yield_by_stage.png"
    figure.savefig(path, dpi=100)
    written.append(path)

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    axes.bar([row.stage for row in report.stage_times], [row.mean_s for row in report.stage_times], color="tab:blue")
    axes.set_ylabel("mean seconds per scenario (all harness seeds)")
    axes.set_title("Validation time per stage")
    path = folder / "time_per_stage.png"
    figure.savefig(path, dpi=100)
    written.append(path)

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    families = sorted(report.diversity.per_family)
    axes.bar(families or ["(none)"], [report.diversity.per_family[f] for f in families] or [0.0], color="tab:purple")
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean pairwise parameter distance")
    axes.set_title(
        f"Diversity: {report.diversity.mean_pairwise_distance:.2f} overall, "
        f"family entropy {report.diversity.family_entropy:.2f}"
    )
    path = folder / "diversity.png"
    figure.savefig(path, dpi=100)
    written.append(path)
    return written


__all__ = ["TableData", "comparison_tables", "format_value", "report_tables", "tables_to_csv", "write_plots"]
