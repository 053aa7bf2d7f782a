"""`scenarios verify` and `scenarios withdraw`: check a benchmark against its certificates, and take scenarios out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from scenario_lib.cli.app import StoreOption, app, load_cli_settings, open_cli_store, run_guarded
from scenario_lib.cli.evaluate_commands import BenchmarkArgument, open_cli_benchmark
from scenario_lib.cli.output import console, write_json

if TYPE_CHECKING:
    from scenario_lib.store.dataset import DatasetStore
    from scenario_lib.validation.verify import BenchmarkVerification

def _resolve(benchmark: str, store: str | None) -> tuple[DatasetStore, str]:
    """The store and destination a command names: by folder URL (its own store), or by name in ``--store``."""
    from scenario_lib.envs.benchmark import resolve_benchmark

    if "/" in benchmark:
        return run_guarded(lambda: resolve_benchmark(benchmark, store))
    dataset = open_cli_store(load_cli_settings(store_url=store))
    return run_guarded(lambda: resolve_benchmark(benchmark, dataset))


@app.command()
def verify(
    benchmark: BenchmarkArgument,
    scenario_ids: Annotated[
        list[str] | None, typer.Option("--scenario", help="Verify only this scenario (repeat for more); default: all.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every scenario's findings as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Check every scenario of a benchmark against its validation certificate.

    The files' SHA-256 against the manifest and the certificate; then, on the stored files, without the
    script: mesh checks, MJCF compilation, stability and at rest, the task, and the demonstration's replay,
    compared with the certified values within stated tolerances (docs/verify.md). Exit 1 when a scenario is
    flagged or has no certificate; `scenarios withdraw` takes a flagged one out."""
    from scenario_lib.runs.withdrawal import read_withdrawals
    from scenario_lib.validation.pipeline import library_versions
    from scenario_lib.validation.verify import BenchmarkVerification, verify_stored_scenario

    opened = open_cli_benchmark(benchmark, store)
    dataset, dest = opened.store, opened.dest
    entries = {entry.scenario_id: entry for entry in opened.manifest.entries}
    chosen = list(dict.fromkeys(scenario_ids or entries))
    unknown = [sid for sid in chosen if sid not in entries]
    if unknown:
        run_guarded(lambda: opened.env_kwargs(unknown[0]))  # ConfigError naming the benchmark's scenarios

    def run() -> BenchmarkVerification:
        return BenchmarkVerification(
            dest=dest,
            url=opened.url,
            versions=library_versions(),
            scenarios=[
                verify_stored_scenario(dataset, entries[sid].path, scenario_id=sid, promoted_files=entries[sid].files)
                for sid in chosen
            ],
            withdrawn=[record.scenario_id for record in read_withdrawals(dataset, dest)],
        )

    result = run_guarded(run)
    if as_json:
        write_json(
            {
                **result.model_dump(mode="json"),
                "flagged": result.flagged,
                "uncertified": result.uncertified,
                "verified": result.verified,
            }
        )
    else:
        _print_verification(result)
    raise typer.Exit(0 if result.verified else 1)


def _print_verification(result: BenchmarkVerification) -> None:
    from rich.markup import escape
    from rich.table import Table

    from scenario_lib.validation.verify import VerificationStatus

    marks = {
        VerificationStatus.VERIFIED: "[green]verified[/]",
        VerificationStatus.FLAGGED: "[red]FLAGGED[/]",
        VerificationStatus.UNCERTIFIED: "[yellow]uncertified[/]",
    }
    table = Table(title=f"Verification of benchmark {result.dest} ({len(result.scenarios)} scenarios)", title_justify="left")
    for column in ("scenario", "status", "checks", "findings", "first finding"):
        table.add_column(column, justify="right" if column in ("checks", "findings") else "left")
    for item in result.scenarios:
        first = item.findings[0].message if item.findings else item.note
        table.add_row(item.scenario_id, marks[item.status], str(item.checks), str(len(item.findings)), escape(first))
    console.print(table)
    for item in result.scenarios:
        if item.version_changes:
            changes = ", ".join(item.version_changes)
            message = f"{item.scenario_id}: certified with other versions ({changes}): the tolerances for a version change apply"
            console.print(message, highlight=False, markup=False)
        for finding in item.findings[1:]:
            console.print(f"{item.scenario_id}: [{finding.aspect.value}] {finding.message}", highlight=False, markup=False)
    if result.withdrawn:
        console.print(f"withdrawn earlier: {', '.join(result.withdrawn)}", highlight=False)
    if result.flagged:
        console.print(
            f"take a flagged scenario out with: scenarios withdraw {result.dest} {result.flagged[0]} --reason \"...\"",
            highlight=False,
            markup=False,
        )


@app.command()
def withdraw(
    benchmark: BenchmarkArgument,
    scenario_ids: Annotated[list[str], typer.Argument(metavar="SCENARIO_ID...", help="The scenarios to take out.")],
    reason: Annotated[str, typer.Option("--reason", help="Why they leave the benchmark; recorded for its card.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Withdraw scenarios from a benchmark with a reason: the manifest stops listing them, their folders
    are kept aside and a record (reason, time, the entry removed) stays in the benchmark for its card."""
    from scenario_lib.runs.withdrawal import withdraw as withdraw_scenarios

    dataset, dest = _resolve(benchmark, store)
    result = run_guarded(lambda: withdraw_scenarios(dataset, scenario_ids, dest=dest, reason=reason))
    if as_json:
        write_json(result.model_dump(mode="json"))
        return
    for scenario_id in result.withdrawn:
        console.print(f"{scenario_id}: [green]withdrawn[/] from {dest}", highlight=False)
    for scenario_id in result.already_withdrawn:
        console.print(f"{scenario_id}: already withdrawn from {dest}", highlight=False)
    console.print(f"{dest} now lists {result.entry_count} scenario(s): {result.manifest_url}", highlight=False, markup=False)


@app.command()
def card(
    benchmark: BenchmarkArgument,
    license_id: Annotated[
        str | None, typer.Option("--license", help="SPDX licence of the dataset (e.g. CC-BY-4.0, the default); kept.")
    ] = None,
    train_fraction: Annotated[
        float | None, typer.Option("--train-fraction", help="Share of scenarios in the train split (default 0.8); kept.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Rebuild a benchmark's index.parquet, dataset card (README.md) and croissant.json from what it has
    committed (every promotion does too). --license and --train-fraction are stored with the benchmark, so
    later promotions keep them (docs/publish.md)."""
    from scenario_lib.runs.benchmark_index import CardSettings
    from scenario_lib.runs.publication import (
        PublishedFiles,
        read_card_settings,
        rebuild_benchmark_files,
        write_card_settings,
    )

    dataset, dest = _resolve(benchmark, store)

    def run() -> PublishedFiles:
        if license_id is not None or train_fraction is not None:
            current = read_card_settings(dataset, dest)
            settings = CardSettings.from_options(
                license=current.license if license_id is None else license_id,
                train_fraction=current.train_fraction if train_fraction is None else train_fraction,
            )
            if settings != current:
                write_card_settings(dataset, dest, settings)
        return rebuild_benchmark_files(dataset, dest)

    result = run_guarded(run)
    if as_json:
        write_json(result.model_dump(mode="json"))
        return
    changed = f"{len(result.written)} rewritten" if result.written else "all up to date"
    console.print(f"{dest}: {result.entry_count} scenario(s), derived files {changed}", highlight=False, markup=False)
    for name, url in result.files.items():
        console.print(f"  {name}: {url}", highlight=False, markup=False)


@app.command()
def release(
    benchmark: BenchmarkArgument,
    version: Annotated[str, typer.Option("--version", help="The version to freeze, MAJOR.MINOR.PATCH (e.g. 1.0.0).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Freeze a benchmark as an immutable version under releases/VERSION/: its manifest, card, index and
    Croissant metadata (with the version and a citation). Later promotions do not change it; an existing
    version is refused."""
    from scenario_lib.runs.publication import release_benchmark

    dataset, dest = _resolve(benchmark, store)
    result = run_guarded(lambda: release_benchmark(dataset, dest, version))
    if as_json:
        write_json(result.model_dump(mode="json"))
        return
    console.print(
        f"{dest} {result.version}: [green]released[/], {result.entry_count} scenario(s), manifest sha256 "
        f"{result.manifest_sha256[:12]}: {result.url}",
        highlight=False,
    )
