"""`scenarios analyze`, `compare` and `traces export`: what the runs produced, as numbers and as datasets."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scenario_lib.cli.app import StoreOption, app, fail, load_cli_settings, open_cli_store, run_guarded, traces_app
from scenario_lib.cli.output import OutputFormat, console, error_console, print_tables, write_json, write_stdout

if TYPE_CHECKING:
    from scenario_lib.cli.analysis_tables import TableData
    from scenario_lib.config import Settings
    from scenario_lib.insight.trace_export import ExportFormat, ExportSummary

RunRefs = Annotated[
    list[str] | None,
    typer.Argument(metavar="RUN|BATCH", help="Run ids or batch names; none: every run in the store."),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table | json | csv | markdown")]


def _emit_tables(tables: list[TableData], output: OutputFormat) -> None:
    from scenario_lib.cli.analysis_tables import tables_to_csv

    if output is OutputFormat.CSV:
        write_stdout(tables_to_csv(tables))
    elif output is OutputFormat.MARKDOWN:
        write_stdout("\n".join(table.to_markdown() for table in tables))
    else:
        print_tables(tables)


@app.command()
def analyze(
    refs: RunRefs = None,
    output: FormatOption = OutputFormat.TABLE,
    plots: Annotated[
        Path | None, typer.Option(help="Write PNG charts (yield, time per stage, diversity) here.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Yield per stage, tier, family and model; cost per accepted scenario; parameter coverage and diversity."""
    from scenario_lib.cli.analysis_tables import report_tables, write_plots
    from scenario_lib.insight.analysis import analyze_runs, load_runs, load_scenario_facts

    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    runs = run_guarded(lambda: load_runs(dataset, refs or []))
    facts = run_guarded(lambda: load_scenario_facts(dataset, runs))
    report = analyze_runs(runs, facts)
    if output is OutputFormat.JSON:
        write_json(report.model_dump(mode="json"))
    else:
        _emit_tables(report_tables(report), output)
    if plots is not None:
        written = run_guarded(lambda: write_plots(report, plots))
        # Machine-readable output keeps stdout to itself.
        target = console if output is OutputFormat.TABLE else error_console
        target.print("plots: " + ", ".join(str(path) for path in written), highlight=False)


@app.command()
def compare(
    refs: RunRefs = None,
    by: Annotated[
        str, typer.Option(help="Groups: model (provider:model) | provider | temperature | experiment.")
    ] = "model",
    tier: Annotated[
        str | None, typer.Option(help="Only this tier; default: every tier with two groups or more.")
    ] = None,
    output: FormatOption = OutputFormat.TABLE,
    store: StoreOption = None,
) -> None:
    """Groups side by side on the same tier, with Kruskal-Wallis and Mann-Whitney U tests of per-seed outcomes.

    Per-seed outcomes: passed (0/1), stages passed (0-5), attempts, seconds and tokens.
    """
    from scenario_lib.cli.analysis_tables import comparison_tables
    from scenario_lib.insight.analysis import GroupBy, load_runs
    from scenario_lib.insight.comparison import compare_groups
    from scenario_lib.tiers import resolve_tier

    try:
        group_by = GroupBy(by)
    except ValueError:
        fail(f"unknown grouping {by!r}; use one of {', '.join(g.value for g in GroupBy)}")
    tier_name = run_guarded(lambda: resolve_tier(tier).value) if tier is not None else None
    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    runs = run_guarded(lambda: load_runs(dataset, refs or []))
    comparisons = compare_groups(runs, group_by, tier=tier_name)
    if not comparisons:
        found = sorted({f"{run.summary.tier}" for run in runs})
        fail(
            f"nothing to compare: no tier{f' ({tier_name})' if tier_name else ''} has two {group_by.value} groups or "
            f"more in these runs (tiers: {', '.join(found)}); add runs of another {group_by.value} on the same tier",
            code=1,
        )
    if output is OutputFormat.JSON:
        write_json([comparison.model_dump(mode="json") for comparison in comparisons])
    else:
        _emit_tables(comparison_tables(comparisons), output)


def _export_to(settings: Settings, out: str, formats: list[ExportFormat]) -> tuple[ExportSummary, str]:
    """Export the store's traces to ``out``: a folder, or an S3 URL (through a local folder)."""
    from scenario_lib.store.dataset import DatasetStore
    from scenario_lib.insight.trace_export import CALLS_DIR, export_store_traces

    source = open_cli_store(settings)
    if not out.lower().startswith("s3://"):
        folder = Path(out.removeprefix("file://")).expanduser()
        return export_store_traces(source, folder, formats), str(folder.resolve())
    target = DatasetStore.from_settings(settings.store, url=out)
    with tempfile.TemporaryDirectory(prefix="scenario-export-") as staging:
        local = Path(staging)
        # The earlier parts come down first so the export stays incremental (no span exported twice).
        target.get_prefix(CALLS_DIR, local / CALLS_DIR)
        summary = export_store_traces(source, local, formats)
        target.put_dir(local / CALLS_DIR, CALLS_DIR)
        for path in local.glob("*.jsonl"):
            target.write_bytes(path.name, path.read_bytes())
    return summary, target.url


@traces_app.command("export")
def traces_export(
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help="parquet | sft | preference | openai; repeat for several; default: all."),
    ] = None,
    out: Annotated[str, typer.Option(help="Output folder or s3://bucket/prefix.")] = "./trace-datasets",
    store: StoreOption = None,
) -> None:
    """Export the agent's model calls stored under traces/ as RL and fine-tuning datasets (incremental)."""
    from scenario_lib.insight.trace_export import ALL_FORMATS, ExportFormat

    chosen: list[ExportFormat] = []
    for name in formats or []:
        try:
            chosen.append(ExportFormat(name))
        except ValueError:
            fail(f"unknown export format {name!r}; use {', '.join(f.value for f in ExportFormat)}")
    settings = load_cli_settings(store_url=store)
    if not out.strip():
        fail("--out is empty: name a folder or an s3://bucket/prefix URL")
    summary, where = run_guarded(lambda: _export_to(settings, out, chosen or list(ALL_FORMATS)))
    console.print(
        f"exported {summary.rows_added} new model calls ({summary.rows_total} in all, {summary.duplicates_skipped} "
        f"already exported) to {where}: {summary.sft_rows} SFT rows, {summary.preference_pairs} preference pairs",
        highlight=False,
    )
    for name, path in sorted(summary.files.items()):
        shown = path if where.startswith("/") else f"{where.rstrip('/')}/{path.name}"
        console.print(f"  {name}: {shown}", highlight=False)
