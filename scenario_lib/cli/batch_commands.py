"""`scenarios batch validate|run|list|status`: campaigns of runs from a YAML file, resumable after any stop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from scenario_lib.cli.app import (
    StoreOption,
    batch_app,
    exit_on_interrupt,
    fail,
    llm_for,
    load_cli_settings,
    open_cli_store,
    run_guarded,
)
from scenario_lib.cli.generate_command import SeedProgress
from scenario_lib.cli.output import console, write_json
from scenario_lib.errors import ConfigError

if TYPE_CHECKING:
    from scenario_lib.runs.batch import BatchCheckpoint, BatchEvent
    from scenario_lib.runs.batch_spec import BatchPlan
    from scenario_lib.config import LlmSettings, Settings

BatchFile = Annotated[Path, typer.Argument(help="The batch YAML file (see configs/example_batch.yaml).")]


def _load_plan(path: Path) -> BatchPlan:
    from scenario_lib.runs.batch_spec import load_batch

    return run_guarded(lambda: load_batch(path))


def _unit_llm_settings(plan: BatchPlan, settings: Settings) -> dict[str, LlmSettings]:
    """Model settings of every unit; a provider without its key stops here, before anything runs."""
    resolved = {}
    for unit in plan.units:
        try:
            resolved[unit.run_id] = llm_for(
                settings,
                provider=unit.provider,
                model=unit.model,
                temperature=unit.temperature,
                api_key_env=unit.api_key_env,
                base_url=unit.base_url,
            )
        except ConfigError as err:
            raise ConfigError(f"{plan.source}: experiment {unit.experiment} (run {unit.index}): {err}") from None
    return resolved


def _print_plan(plan: BatchPlan, settings: Settings, checkpoint: BatchCheckpoint | None = None) -> None:
    states = {progress.unit.run_id: progress for progress in checkpoint.units} if checkpoint else {}
    table = Table(title=f"Batch {plan.name}: {plan.source}", title_justify="left")
    columns = ["#", "experiment", "provider:model", "tier", "temp", "count", "max seeds", "run id"]
    if checkpoint is not None:
        columns.append("state")
    for column in columns:
        table.add_column(column)
    for unit in plan.units:
        cells = [
            str(unit.index),
            unit.experiment,
            f"{unit.provider.value}:{unit.model}",
            unit.tier.value,
            f"{unit.temperature:g}",
            str(unit.count),
            str(unit.max_seeds),
            unit.run_id,
        ]
        if checkpoint is not None:
            progress = states.get(unit.run_id)
            cells.append(f"{progress.state.value} {progress.passed}/{unit.count}" if progress else "new")
        table.add_row(*cells)
    console.print(table)
    fewest, most = plan.model_calls(settings.llm.max_attempts)
    console.print(
        f"{len(plan.units)} runs, {plan.scenarios} scenarios (at most {plan.max_seeds} seeds), "
        f"{fewest}-{most} model calls (every seed accepted at once .. every seed spending "
        f"{settings.llm.max_attempts} attempts)",
        highlight=False,
    )


@batch_app.command("validate")
def batch_validate(path: BatchFile) -> None:
    """Check a batch file (fields, values, provider keys) and print how it expands."""
    plan = _load_plan(path)
    settings = load_cli_settings()
    run_guarded(lambda: _unit_llm_settings(plan, settings))
    _print_plan(plan, settings)
    console.print(f"[green]{path} is valid[/]", highlight=False)


def _print_checkpoint(checkpoint: BatchCheckpoint) -> None:
    table = Table(title=f"Batch {checkpoint.name} ({checkpoint.state()})", title_justify="left")
    for column in ("#", "experiment", "provider:model", "tier", "temp", "passed", "failed", "state", "run id"):
        table.add_column(column)
    for progress in checkpoint.units:
        unit = progress.unit
        state = progress.state.value + (f": {escape(progress.error[:80])}" if progress.error else "")
        table.add_row(
            str(unit.index),
            unit.experiment,
            f"{unit.provider.value}:{unit.model}",
            unit.tier.value,
            f"{unit.temperature:g}",
            f"{progress.passed}/{unit.count}",
            str(progress.failed),
            state,
            unit.run_id,
        )
    console.print(table)
    console.print(
        f"{checkpoint.finished_units}/{len(checkpoint.units)} runs finished, "
        f"{checkpoint.passed}/{checkpoint.planned} scenarios; updated {checkpoint.updated_at or '-'}",
        highlight=False,
    )


@batch_app.command("run")
def batch_run(
    path: BatchFile,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded plan and stop.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a batch that ran before.")] = False,
    parallel: Annotated[int, typer.Option(help="Runs at once (they share the sandbox pool).")] = 1,
    store: StoreOption = None,
) -> None:
    """Run every experiment of a batch file; progress is checkpointed in the store after every seed.

    An interrupted batch (Ctrl-C, a killed process, a lost machine) continues with --resume: finished
    runs are skipped and no finished scenario is redone. Exit 1 when a run fell short of its count.
    """
    from scenario_lib.runs.batch import BatchEventKind, read_checkpoint, run_batch
    from scenario_lib.runs.generation import open_generation_context

    plan = _load_plan(path)
    if not 1 <= parallel <= 64:
        fail(f"--parallel must be from 1 to 64 runs at once, got {parallel}")
    settings = load_cli_settings(store_url=store)
    if dry_run:
        _print_plan(plan, settings)
        try:
            _unit_llm_settings(plan, settings)
        except ConfigError as err:
            console.print(f"[yellow]warning:[/] {escape(str(err))}", highlight=False)
        console.print("dry run: nothing was generated", highlight=False)
        return
    llm_settings = run_guarded(lambda: _unit_llm_settings(plan, settings))
    console.print(
        f"batch {plan.name}: {len(plan.units)} runs, {plan.scenarios} scenarios, {parallel} run(s) at once",
        highlight=False,
    )

    def run() -> BatchCheckpoint:
        with open_generation_context(settings, trace_label=f"batch-{plan.name}") as context:
            with SeedProgress(console, plan.name, plan.scenarios) as display:
                earlier = read_checkpoint(context.store, plan.name) if resume else None
                # Runs finished before count towards the bar from the start.
                totals = {p.unit.run_id: p.passed for p in (earlier.units if earlier else []) if p.finished}
                display.progress.update(display.task, completed=sum(totals.values()))

                def show(event: BatchEvent) -> None:
                    unit = event.progress.unit
                    totals[unit.run_id] = event.progress.passed
                    if event.kind is BatchEventKind.UNIT_STARTED:
                        display.progress.console.print(
                            f"[bold]{unit.run_id}[/]: {escape(unit.label())}, {unit.count} scenario(s)"
                        )
                    elif event.kind is BatchEventKind.SEED_FINISHED and event.outcome is not None:
                        display.record(
                            event.outcome,
                            passed=event.progress.passed,
                            count=unit.count,
                            prefix=f"{unit.run_id}: ",
                            completed=sum(totals.values()),
                        )
                    elif event.kind is BatchEventKind.UNIT_FINISHED:
                        state = event.progress.state.value
                        display.progress.console.print(
                            f"{unit.run_id}: {state}, {event.progress.passed}/{unit.count} passed, "
                            f"{event.progress.failed} failed seeds",
                            highlight=False,
                        )

                return run_batch(
                    context, plan, llm_settings=llm_settings, resume=resume, parallel=parallel, on_event=show
                )

    with exit_on_interrupt(f"resume with: scenarios batch run {path} --resume"):
        checkpoint = run_guarded(
            run, stopped=f"batch {plan.name}", resume=f"resume with: scenarios batch run {path} --resume"
        )
    _print_checkpoint(checkpoint)
    if checkpoint.state() != "complete":
        fail(
            f"batch {plan.name} finished with runs that fell short of their count; see `scenarios batch status "
            f"{plan.name}` and `scenarios analyze {plan.name}`",
            code=1,
        )


@batch_app.command("list")
def batch_list(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The batches in the store with their progress."""
    from scenario_lib.runs.batch import list_checkpoints

    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    checkpoints = run_guarded(lambda: list_checkpoints(dataset))
    if as_json:
        write_json(
            [
                {
                    "name": c.name,
                    "state": c.state(),
                    "runs": len(c.units),
                    "finished_runs": c.finished_units,
                    "passed": c.passed,
                    "planned": c.planned,
                    "updated_at": c.updated_at,
                }
                for c in checkpoints
            ]
        )
        return
    table = Table(title=f"Batches in {dataset.describe()}", title_justify="left")
    for column in ("batch", "state", "runs", "scenarios", "updated", "file"):
        table.add_column(column)
    for c in checkpoints:
        table.add_row(
            c.name, c.state(), f"{c.finished_units}/{len(c.units)}", f"{c.passed}/{c.planned}", c.updated_at, c.source
        )
    console.print(table)


@batch_app.command("status")
def batch_status(
    name: Annotated[str, typer.Argument(help="The batch name (its file's name field).")],
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checkpoint as JSON.")] = False,
) -> None:
    """Per run of a batch: state, passed and failed seeds."""
    from scenario_lib.runs.batch import read_checkpoint
    from scenario_lib.store.layout import BATCHES_PREFIX

    settings = load_cli_settings(store_url=store)
    dataset = open_cli_store(settings)
    checkpoint = run_guarded(lambda: read_checkpoint(dataset, name))
    if checkpoint is None:
        fail(f"no batch {name!r} in {dataset.url_for(BATCHES_PREFIX)}; `scenarios batch list` shows the batches")
    if as_json:
        write_json(checkpoint.model_dump(mode="json"))
        return
    _print_checkpoint(checkpoint)
