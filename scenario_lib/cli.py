"""The `scenarios` command line.

Heavy libraries (build123d, mujoco, prefect) are imported inside commands so `--help` stays fast.
Expected failures (bad input, unreachable store, failed validation) exit non-zero with one paragraph;
`--verbose` adds the traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from scenario_lib.errors import ScenarioError

app = typer.Typer(
    name="scenarios",
    help="Generate, validate and manage physics benchmark scenarios.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)
_state: dict[str, bool] = {"verbose": False}


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
) -> None:
    """Generate, validate and manage physics benchmark scenarios."""
    _state["verbose"] = verbose


def fail(message: str, *, code: int = 2) -> NoReturn:
    """Print a one-paragraph error and exit with ``code``."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def run_guarded(action: Any) -> Any:
    """Run ``action()``, turning expected errors into a clean exit (traceback only with --verbose)."""
    try:
        return action()
    except (ScenarioError, OSError) as err:
        if _state["verbose"]:
            error_console.print_exception()
        fail(str(err))


def load_cli_settings() -> Any:
    from pydantic import ValidationError

    from scenario_lib.config import load_settings

    try:
        return load_settings()
    except ValidationError as err:
        fail(f"invalid settings: {err}. Fix the SCENARIOS_* environment variables or scenarios.toml.")


def make_validator(settings: Any, seeds: int) -> Any:
    """The sandbox pool and validator configured from settings (the caller closes the pool)."""
    from scenario_lib.sandbox import SandboxLimits, SandboxPool
    from scenario_lib.validation import HarnessConfig, Validator

    sandbox = settings.sandbox
    pool = SandboxPool(
        workers=sandbox.workers,
        limits=SandboxLimits(
            memory_mb=sandbox.memory_limit_mb,
            cpu_s=sandbox.cpu_limit_s,
            wall_s=sandbox.wall_limit_s,
            max_output_mb=sandbox.max_output_mb,
        ),
        mode=sandbox.mode,
    )
    validation = settings.validation
    config = HarnessConfig(
        seeds=seeds,
        scale_low=validation.scale_low,
        scale_high=validation.scale_high,
        sim_duration_s=validation.sim_duration_s,
        mjcf_schema_path=validation.mjcf_schema_path,
        decomposition_cache_dir=validation.decomposition_cache_dir,
    )
    return Validator(pool, config)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A scenario script defining build(seed, scale).")],
    seeds: Annotated[int, typer.Option(min=1, max=1000, help="How many (seed, scale) pairs to validate.")] = 8,
    base_seed: Annotated[int, typer.Option("--seed", help="The first seed of the harness.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate any scenario script across seeds and scales; exit 1 when a stage fails."""
    if not path.is_file():
        fail(f"no scenario script at {path}: pass the path of a .py file that defines build(seed, scale)")
    source = path.read_text(encoding="utf-8")
    settings = load_cli_settings()

    def run() -> Any:
        validator = make_validator(settings, seeds)
        with validator.pool:
            report, _ = validator.validate_script(source, base_seed=base_seed)
        return report

    report = run_guarded(run)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_report(report, title=str(path))
    raise typer.Exit(0 if report.passed else 1)


def print_report(report: Any, *, title: str) -> None:
    """A Rich table of stage verdicts per (seed, scale), then the per-stage pass rates."""
    from scenario_lib.report import STAGE_ORDER, Verdict

    marks = {Verdict.PASS: "[green]pass[/]", Verdict.FAIL: "[red]FAIL[/]", Verdict.SKIPPED: "[dim]-[/]"}
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
    rates = ", ".join(f"{stage.value} {report.pass_rate(stage):.0%}" for stage in STAGE_ORDER)
    console.print(f"pass rate per stage: {rates}  ({report.duration_s:.2f} s)")
    style = "green" if report.passed else "red"
    console.print(f"[{style}]{report.summary()}[/]", highlight=False)


@app.command()
def author(
    tier: Annotated[str, typer.Option(help="tier1 | tier2 | test_dummy (or 1 | 2).")],
    out: Annotated[Path, typer.Option(help="Where to write the script.")],
    seed: Annotated[int, typer.Option(help="Seed of the design choices.")] = 0,
    prompt: Annotated[str | None, typer.Option(help="What to build; defaults to the tier's prompt.")] = None,
) -> None:
    """Write an offline-authored scenario script: a starting point to edit."""
    from scenario_lib.authoring import author_script
    from scenario_lib.tiers import resolve_tier

    def run() -> Any:
        script = author_script(resolve_tier(tier), prompt, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(script.source, encoding="utf-8")
        return script

    script = run_guarded(run)
    console.print(f"wrote {script.family} ({script.tier.value}) to {out}; check it with: scenarios validate {out}")


@app.command()
def tiers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the tier presets, their families and default prompts."""
    from scenario_lib.tiers import TIER_PRESETS

    if as_json:
        payload = {
            tier.value: {"families": list(p.families), "prompt": p.default_prompt} for tier, p in TIER_PRESETS.items()
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
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
    from scenario_lib.validation import library_versions

    for name, value in sorted(library_versions().items()):
        console.print(f"{name} {value}")
