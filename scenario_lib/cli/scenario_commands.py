"""Commands on scenarios: validate a script, author one offline, list, show and promote stored ones."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from scenario_lib.cli.app import StoreOption, app, fail, load_cli_settings, open_cli_store, run_guarded
from scenario_lib.cli.output import console, human_size, print_report, print_run_summary, write_json
from scenario_lib.errors import ConfigError

if TYPE_CHECKING:
    from scenario_lib.report import ValidationReport
    from scenario_lib.store.dataset import DatasetStore


class Listing(str, Enum):
    """What `scenarios list` lists."""

    STAGING = "staging"
    BENCHMARKS = "benchmarks"
    FAILURES = "failures"
    RUNS = "runs"


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A scenario script defining build(seed, scale), or a MuJoCo .xml model.")],
    seeds: Annotated[int, typer.Option(min=1, max=1000, help="How many (seed, scale) pairs to validate.")] = 8,
    base_seed: Annotated[int, typer.Option("--seed", help="The first seed of the harness.")] = 0,
    keyframe: Annotated[str | None, typer.Option("--keyframe", help="For a .xml model: start from this keyframe, not qpos0.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate any scenario script across seeds and scales, or any MuJoCo model file (compile, stability,
    at rest; no task); exit 1 when a stage fails."""
    if not path.is_file():
        fail(f"no scenario script at {path}: pass the path of a .py file that defines build(seed, scale), or of a .xml model")
    if path.suffix.lower() == ".xml":
        from scenario_lib.validation.scene_file import validate_mjcf_file

        report = run_guarded(lambda: validate_mjcf_file(path, keyframe=keyframe))
        if as_json:
            sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        else:
            print_report(report, title=str(path))
        raise typer.Exit(0 if report.passed else 1)
    if keyframe is not None:
        fail("--keyframe applies to a MuJoCo .xml model; a scenario script starts from the pose it declares")
    source = path.read_text(encoding="utf-8")
    settings = load_cli_settings()

    def run() -> ValidationReport:
        from scenario_lib.runs.generation import make_validator

        validator = make_validator(settings, seeds=seeds)
        with validator:
            report, _ = validator.validate_script(source, base_seed=base_seed)
        return report

    report = run_guarded(run)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_report(report, title=str(path))
    raise typer.Exit(0 if report.passed else 1)


@app.command()
def revalidate(
    scenario_ids: Annotated[list[str], typer.Argument(help="Staged scenario ids (run id _ seed).")],
    store: StoreOption = None,
) -> None:
    """Validate staged scenarios again with today's stages (at rest, solvability) and store the new report
    and demonstration; exit 1 when one no longer passes (it is then left as it was)."""
    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)

    def run() -> list[tuple[str, bool, str]]:
        from scenario_lib.runs.generation import hidden_paths_of, make_validator, revalidate_scenario

        results = []
        validator = make_validator(settings, hidden_paths=hidden_paths_of(dataset))
        with validator:
            for scenario_id in scenario_ids:
                manifest, report = revalidate_scenario(dataset, scenario_id, validator)
                results.append((scenario_id, report.passed, report.summary()))
        return results

    results = run_guarded(run)
    for scenario_id, passed, summary in results:
        verdict = "[green]re-validated[/]" if passed else "[red]no longer passes (left unchanged)[/]"
        console.print(f"{scenario_id}: {verdict}: {summary}", highlight=False)
    raise typer.Exit(0 if all(passed for _, passed, _ in results) else 1)


@app.command()
def author(
    tier: Annotated[str, typer.Option(help="tier1 | tier2 | test_dummy (or 1 | 2).")],
    out: Annotated[Path, typer.Option(help="Where to write the script.")],
    seed: Annotated[int, typer.Option(help="Seed of the design choices.")] = 0,
    prompt: Annotated[str | None, typer.Option(help="What to build; defaults to the tier's prompt.")] = None,
) -> None:
    """Write an offline-authored scenario script: a starting point to edit."""
    from scenario_lib.authoring.offline import AuthoredScript, author_script
    from scenario_lib.tiers import resolve_tier

    def run() -> AuthoredScript:
        script = author_script(resolve_tier(tier), prompt, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(script.source, encoding="utf-8")
        return script

    script = run_guarded(run)
    console.print(f"wrote {script.family} ({script.tier.value}) to {out}; check it with: scenarios validate {out}")


# --- reading scenario folders ---------------------------------------------------------------------------


def _benchmark_folders(store: DatasetStore, dest: str | None) -> list[tuple[str, str]]:
    """(dest, folder) of every committed benchmark scenario, of one destination or all."""
    from scenario_lib.store.layout import BENCHMARKS_PREFIX, benchmark_folder_of, benchmark_prefix, join_key, validate_dest

    found = []
    for key in store.list_files(join_key(BENCHMARKS_PREFIX, validate_dest(dest)) if dest else BENCHMARKS_PREFIX):
        if (folder := benchmark_folder_of(key)) is not None:
            found.append((folder[0], benchmark_prefix(*folder)))
    return sorted(found)


def _scenario_row(store: DatasetStore, folder: str, dest: str = "") -> dict[str, Any]:
    from scenario_lib.store.layout import parse_scenario_id
    from scenario_lib.validation.artifacts import read_scenario_manifest

    manifest = read_scenario_manifest(store, folder)
    run_id = parse_scenario_id(manifest.id)[0]
    return {
        "id": manifest.id,
        "run_id": run_id,
        "dest": dest,
        "tier": manifest.tier,
        "family": manifest.family,
        "verdict": "passed" if manifest.passed else f"failed: {manifest.stage_reached}",
        "attempts": manifest.attempt,
        "created_at": manifest.created_at,
        "size_bytes": manifest.total_size_bytes(),
        "location": store.url_for(folder),
    }


def _run_row(store: DatasetStore, key: str) -> dict[str, Any]:
    from scenario_lib.runs.generation import parse_run_record

    summary = parse_run_record(store, key)
    return {
        "run_id": summary.run_id,
        "tier": summary.tier,
        "model": f"{summary.provider}:{summary.model or 'default'}",
        "passed": summary.passed,
        "count": summary.count,
        "failed": summary.failed,
        "state": "complete" if summary.complete else "incomplete",
        "started_at": summary.started_at,
        "duration_s": summary.duration_s,
        "location": store.url_for(key),
    }


def collect_listing(store: DatasetStore, where: Listing, dest: str | None) -> list[dict[str, Any]]:
    from scenario_lib.store.commit import list_scenarios
    from scenario_lib.store.layout import FAILURES_PREFIX, RUNS_PREFIX, STAGING_PREFIX, join_key

    if where is Listing.RUNS:
        keys = [key for key in store.list_files(RUNS_PREFIX, recursive=False) if key.endswith(".json")]
        return [_run_row(store, key) for key in keys]
    if where is Listing.BENCHMARKS:
        return [_scenario_row(store, folder, dest=name) for name, folder in _benchmark_folders(store, dest)]
    prefix = STAGING_PREFIX if where is Listing.STAGING else FAILURES_PREFIX
    return [_scenario_row(store, join_key(prefix, name)) for name in list_scenarios(store, prefix)]


@app.command("list")
def list_command(
    where: Annotated[Listing, typer.Argument(help="What to list.")] = Listing.STAGING,
    dest: Annotated[str | None, typer.Option(help="Only this benchmark destination (with benchmarks).")] = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Table of staged, promoted or failed scenarios (tier, family, verdict, date, size), or of runs."""
    if dest is not None and where is not Listing.BENCHMARKS:
        fail(f"--dest selects a benchmark destination; use it with `scenarios list benchmarks`, not {where.value}")
    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    rows = run_guarded(lambda: collect_listing(dataset, where, dest))
    if as_json:
        write_json(rows)
        return
    if where is Listing.RUNS:
        table = Table(title=f"Runs in {dataset.describe()}", title_justify="left")
        for column in ("run", "tier", "model", "passed", "failed", "state", "started"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["run_id"],
                row["tier"],
                row["model"],
                f"{row['passed']}/{row['count']}",
                str(row["failed"]),
                row["state"],
                row["started_at"][:19],
            )
    else:
        title = f"{where.value.capitalize()}{f' ({dest})' if dest else ''} in {dataset.describe()}"
        table = Table(title=title, title_justify="left")
        columns = ["scenario", "tier", "family", "verdict", "date", "size"]
        if where is Listing.BENCHMARKS:
            columns.insert(0, "dest")
        for column in columns:
            table.add_column(column, justify="right" if column == "size" else "left")
        for row in rows:
            cells = [
                row["id"],
                row["tier"],
                row["family"],
                row["verdict"],
                row["created_at"][:19],
                human_size(row["size_bytes"]),
            ]
            if where is Listing.BENCHMARKS:
                cells.insert(0, row["dest"])
            table.add_row(*cells)
    console.print(table)
    console.print(f"{len(rows)} {'runs' if where is Listing.RUNS else 'scenarios'}")


# --- show -------------------------------------------------------------------------------------------------


def _show_run(dataset: DatasetStore, run_id: str, as_json: bool) -> None:
    from scenario_lib.runs.generation import read_run_record

    summary = run_guarded(lambda: read_run_record(dataset, run_id))
    if as_json:
        write_json(summary.model_dump(mode="json"))
        return
    table = Table(title=f"Seeds of run {run_id}", title_justify="left")
    for column in ("seed", "verdict", "family", "attempts", "time s", "location"):
        table.add_column(column)
    for outcome in summary.outcomes:
        verdict = "[green]passed[/]" if outcome.passed else f"[red]failed: {outcome.stage_reached}[/]"
        table.add_row(
            str(outcome.seed),
            verdict,
            outcome.family,
            str(outcome.attempts),
            f"{outcome.duration_s:.1f}",
            outcome.location,
        )
    console.print(table)
    print_run_summary(summary, dataset)


def _show_scenario(dataset: DatasetStore, folder: str, as_json: bool) -> None:
    from scenario_lib.validation.artifacts import PREVIEW_FILE
    from scenario_lib.store.layout import join_key

    from scenario_lib.validation.artifacts import read_scenario_manifest, read_scenario_report

    manifest = run_guarded(lambda: read_scenario_manifest(dataset, folder))
    report = run_guarded(lambda: read_scenario_report(dataset, folder))
    preview_key = join_key(folder, PREVIEW_FILE)
    preview: str | None = None
    if any(entry.path == PREVIEW_FILE for entry in manifest.files):
        root = dataset.local_root
        preview = str(root / preview_key) if root is not None else dataset.url_for(preview_key)
    if as_json:
        write_json(
            {
                "location": dataset.url_for(folder),
                "preview": preview,
                "manifest": manifest.model_dump(mode="json"),
                "report": report.model_dump(mode="json"),
            }
        )
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("scenario", manifest.id)
    facts.add_row("location", dataset.url_for(folder))
    facts.add_row("tier / family", f"{manifest.tier} / {manifest.family}")
    facts.add_row("verdict", "passed" if manifest.passed else f"failed at {manifest.stage_reached}")
    facts.add_row("author", f"{manifest.author}, attempt {manifest.attempt}")
    facts.add_row("created", manifest.created_at)
    facts.add_row("objective", manifest.objective or "-")
    params = ", ".join(f"{name}={value:.4g}" for name, value in sorted(manifest.parameters.items()))
    facts.add_row("parameters", params or "-")
    facts.add_row("files", f"{len(manifest.files)} ({human_size(manifest.total_size_bytes())})")
    facts.add_row("preview", preview or "none (rendering was off or unavailable)")
    console.print(facts)
    print_report(report, title=manifest.id)


@app.command()
def show(
    identifier: Annotated[str, typer.Argument(metavar="ID", help="A scenario id (run_seed) or a run id.")],
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a scenario (manifest, validation report, preview path) or a run (its seeds and summary)."""
    from scenario_lib.insight.analysis import scenario_folders
    from scenario_lib.store.layout import run_record_key, validate_name

    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    run_guarded(lambda: validate_name(identifier, kind="scenario or run id"))
    if run_guarded(lambda: dataset.exists(run_record_key(identifier))):
        _show_run(dataset, identifier, as_json)
        return
    folders = run_guarded(lambda: scenario_folders(dataset))
    folder = folders.get(identifier) or next((f for f in folders.values() if f.rsplit("/", 1)[-1] == identifier), None)
    if folder is None:
        fail(
            f"no scenario or run {identifier!r} in {dataset.describe()}; list them with `scenarios list` "
            "(staging, benchmarks, failures or runs)"
        )
    _show_scenario(dataset, folder, as_json)


# --- promote ----------------------------------------------------------------------------------------------


@app.command()
def promote(
    identifiers: Annotated[list[str], typer.Argument(metavar="RUN_ID|SCENARIO_ID", help="Runs or scenarios.")],
    dest: Annotated[str, typer.Option(help="Benchmark destination: benchmarks/<dest>/.")] = "default",
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    allow_near_duplicates: Annotated[
        bool,
        typer.Option(
            "--allow-near-duplicates",
            help="Promote near duplicates of scenarios already in the benchmark (or in this promotion) too.",
        ),
    ] = False,
) -> None:
    """Promote staged scenarios (every passed scenario of a run, or single scenarios) into a benchmark.

    A near duplicate of a scenario in the benchmark, or of one earlier in the same promotion, is not
    promoted: it stays in staging, is listed with the id it duplicates and the distance, and the command
    exits 1 (unless --allow-near-duplicates).
    """
    from scenario_lib.runs.promotion import PromotionResult
    from scenario_lib.runs.promotion import promote as promote_scenarios
    from scenario_lib.store.commit import list_scenarios
    from scenario_lib.store.layout import (
        STAGING_PREFIX,
        benchmark_entries_prefix,
        parse_scenario_id,
        validate_dest,
    )

    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    run_guarded(lambda: validate_dest(dest))

    def split_ids() -> tuple[list[str], list[str]]:
        staged = set(list_scenarios(dataset, STAGING_PREFIX))
        entries = dataset.list_files(benchmark_entries_prefix(dest))
        promoted = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in entries}
        known_runs = {parse_scenario_id(sid)[0] for sid in staged | promoted}
        scenario_ids: list[str] = []
        run_ids: list[str] = []
        for identifier in dict.fromkeys(identifiers):
            try:
                parse_scenario_id(identifier)
            except ConfigError:
                run_ids.append(identifier)  # not of the form run_seed: a run id
                continue
            # "a_1" is a scenario unless it names a run of the store and no scenario.
            is_run = identifier in known_runs and identifier not in staged and identifier not in promoted
            (run_ids if is_run else scenario_ids).append(identifier)
        return scenario_ids, run_ids

    scenario_ids, run_ids = run_guarded(split_ids)

    def run() -> list[PromotionResult]:
        results = []
        if scenario_ids:
            results.append(
                promote_scenarios(dataset, scenario_ids, dest=dest, allow_near_duplicates=allow_near_duplicates)
            )
        for run_id in run_ids:
            results.append(
                promote_scenarios(dataset, run_id=run_id, dest=dest, allow_near_duplicates=allow_near_duplicates)
            )
        return results

    results = run_guarded(run)
    promoted = sorted({sid for result in results for sid in result.promoted})
    already = sorted({sid for result in results for sid in result.already_present})
    refused = sorted((item for result in results for item in result.refused), key=lambda item: item.scenario_id)
    if as_json:
        write_json(
            {
                "dest": dest,
                "promoted": promoted,
                "already_present": already,
                "refused": [item.model_dump(mode="json") for item in refused],
                "manifest": results[-1].manifest_url,
            }
        )
        raise typer.Exit(1 if refused else 0)
    table = Table(title=f"Promoted into benchmarks/{dest}", title_justify="left")
    table.add_column("scenario")
    table.add_column("result")
    for scenario_id in promoted:
        table.add_row(scenario_id, "[green]promoted[/]")
    for scenario_id in already:
        table.add_row(scenario_id, "already present")
    for item in refused:
        table.add_row(item.scenario_id, f"[red]near duplicate[/] of {item.duplicate_of} (distance {item.distance:.4f})")
    console.print(table)
    console.print(f"manifest: {results[-1].manifest_url} ({results[-1].entry_count} entries)")
    for item in refused:
        console.print(f"[red]refused:[/] {item.message}")
    if refused:
        raise typer.Exit(1)


# --- tiers and versions -----------------------------------------------------------------------------------


@app.command()
def tiers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the tier presets, their families and default prompts."""
    from scenario_lib.tiers import TIER_PRESETS

    if as_json:
        write_json(
            {tier.value: {"families": list(p.families), "prompt": p.default_prompt} for tier, p in TIER_PRESETS.items()}
        )
        return
    table = Table(title="Tier presets")
    for column in ("tier", "families", "default prompt"):
        table.add_column(column)
    for tier, preset in TIER_PRESETS.items():
        table.add_row(tier.value, ", ".join(preset.families), preset.default_prompt)
    console.print(table)


@app.command()
def version() -> None:
    """Print the versions of scenario_lib and the libraries scenarios depend on."""
    from scenario_lib.validation.pipeline import library_versions

    for name, value in sorted(library_versions().items()):
        console.print(f"{name} {value}")
