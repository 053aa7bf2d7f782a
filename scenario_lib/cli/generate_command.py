"""`scenarios generate`: a run of seeds here, or through the Prefect deployment, with a live progress view."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from scenario_lib.cli.app import (
    StoreOption,
    app,
    exit_on_interrupt,
    fail,
    llm_for,
    load_cli_settings,
    open_cli_store,
    parse_provider,
    run_guarded,
)
from scenario_lib.cli.output import console, error_console, failure_label, print_run_summary, write_stdout
from scenario_lib.errors import ConfigError, ScenarioError

if TYPE_CHECKING:
    from scenario_lib.config import LlmProvider, Settings
    from scenario_lib.runs.generation import GenerationJob, RunSummary, SeedOutcome
    from scenario_lib.store.dataset import DatasetStore
    from scenario_lib.tiers import Tier

POLL_INTERVAL_S = 2.0
API_PROBE_TIMEOUT_S = 3.0


class SeedProgress:
    """A progress bar with ETA over a run's accepted scenarios, and one line per finished seed.

    Lines read ``Generating 3/10... [Success]`` or ``Generating 4/10... [Fail: stability]``: the number
    is the scenario the seed was for (a failed seed leaves its place to the next one).
    """

    def __init__(self, target: Console, label: str, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=target,
        )
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self) -> SeedProgress:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.stop()

    def record(
        self, outcome: SeedOutcome, *, passed: int, count: int, prefix: str = "", completed: int | None = None
    ) -> None:
        number = passed if outcome.passed else min(passed + 1, count)
        line = Text(f"{prefix}Generating {number}/{count}... ")
        if outcome.passed:
            line.append("[Success]", style="green")
        else:
            line.append(f"[Fail: {failure_label(outcome)}]", style="red")
        line.append(f"  seed {outcome.seed}, {outcome.family}, {outcome.duration_s:.1f} s", style="dim")
        self.progress.console.print(line)
        self.progress.update(self.task, completed=passed if completed is None else completed)


def choose_tier(tier: str | None, prompt: str | None) -> tuple[Tier, bool]:
    """The tier given, or the one inferred from a prompt (second value True); `ConfigError` for neither."""
    from scenario_lib.runs.batch_spec import infer_tier
    from scenario_lib.tiers import resolve_tier

    if tier is not None:
        return resolve_tier(tier), False
    if prompt is not None and prompt.strip():
        return infer_tier(prompt), True
    raise ConfigError("pass --tier (1, 2, tier1, tier2 or test_dummy), or a --prompt to infer the tier from")


def _prefect_command(deployment: str, params: dict[str, object]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deployment",
        "run",
        deployment,
        "--params",
        json.dumps(params),
        "--watch",
    ]


def _unreachable_api(url: str, detail: str) -> ConfigError:
    return ConfigError(
        f"the Prefect API at {url} is unreachable ({detail}); start the stack (scripts/stack.sh up) or point "
        "PREFECT_API_URL at a running Prefect server, or drop --via-deployment to generate here"
    )


def probe_prefect_api(url: str) -> None:
    """Raise `ConfigError` unless the Prefect API at ``url`` answers its health check."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=API_PROBE_TIMEOUT_S)
    except httpx.HTTPError as err:
        raise _unreachable_api(url, f"{type(err).__name__}: {err}") from None
    if response.status_code >= 400:
        raise _unreachable_api(url, f"HTTP {response.status_code} from /health")


def run_via_deployment(
    job: GenerationJob,
    store: DatasetStore,
    display: SeedProgress,
    *,
    provider: LlmProvider | None,
    store_url: str | None,
    max_concurrency: int,
    deployment: str,
) -> RunSummary:
    """Start the deployment with ``prefect deployment run --watch``, follow its seeds in the store, read its record.

    The flow writes ``runs/{run_id}.json`` to the worker's store; the CLI reads it from its own, so both
    must be the same store (pass --store to hand the flow the CLI's store URL).
    """
    from scenario_lib.runs.generation import finished_seeds, read_run_record
    from scenario_lib.store.dataset import ObjectNotFoundError

    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        probe_prefect_api(api_url)
    params = _flow_parameters(job, provider=provider, store_url=store_url, max_concurrency=max_concurrency)
    try:
        process = subprocess.Popen(
            _prefect_command(deployment, params),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError as err:
        raise ConfigError(f"cannot run the Prefect CLI ({err}); install prefect in this environment") from None
    tail: deque[str] = deque(maxlen=60)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: tail.extend(process.stdout or ()), daemon=True)
    reader.start()
    seen: set[int] = set()

    def follow() -> None:
        try:
            finished = finished_seeds(store, job.run_id)
        except ScenarioError:
            return  # a folder being committed right now; the next poll sees it
        passed = sum(outcome.passed for outcome in finished.values())
        for seed in sorted(set(finished) - seen):
            seen.add(seed)
            display.record(finished[seed], passed=passed, count=job.count)

    while process.poll() is None:
        follow()
        time.sleep(POLL_INTERVAL_S)
    reader.join(timeout=5)
    follow()
    if process.returncode != 0:
        raise _deployment_failure("".join(tail), process.returncode, deployment, job.run_id, api_url)
    try:
        return read_run_record(store, job.run_id)
    except ObjectNotFoundError:
        raise ConfigError(
            f"the flow run finished but {store.url_for('runs')}/{job.run_id}.json does not exist: the worker writes "
            f"to its own store (SCENARIOS_STORE__URL); make it the CLI's ({store.describe()}) or pass --store"
        ) from None


def _resume_command(job: GenerationJob, given: Mapping[str, object]) -> str:
    """The command that resumes ``job``: the same options (those given) and its run id."""
    options = [f"--tier {job.tier.value}", f"--count {job.count}"]
    for name, value in given.items():
        if value is True:
            options.append(name)
        elif value is not None:
            options.append(f"{name} {shlex.quote(str(value))}")
    return f"scenarios generate {' '.join(options)} --run-id {job.run_id}"


def _generate_here(
    job: GenerationJob, settings: Settings, out: Console, *, concurrency: int, resume_command: str
) -> tuple[RunSummary, DatasetStore]:
    """Run ``job`` in this process with a progress display; Ctrl-C or an error exits with how to resume."""
    from scenario_lib.runs.driver import run_generation
    from scenario_lib.runs.generation import open_generation_context

    def run_here() -> tuple[RunSummary, DatasetStore]:
        seeds_at_once = min(job.count, concurrency)
        with open_generation_context(settings, trace_label=job.run_id, seeds_at_once=seeds_at_once) as context:
            with SeedProgress(out, job.run_id, job.count) as display:
                summary = run_generation(
                    context,
                    job,
                    max_concurrency=concurrency,
                    resume_with=f"`{resume_command}`",
                    on_outcome=lambda outcome, schedule: display.record(outcome, passed=schedule.passed, count=job.count),
                )
            return summary, context.store

    resume_hint = f"resume with: {resume_command}"
    with exit_on_interrupt(resume_hint):
        return run_guarded(run_here, stopped=f"run {job.run_id}", resume=resume_hint)


def _flow_parameters(
    job: GenerationJob, *, provider: LlmProvider | None, store_url: str | None, max_concurrency: int
) -> dict[str, object]:
    """The generate flow's parameters for ``job`` (only those given: the deployment's defaults stay)."""
    params: dict[str, object] = {
        "tier": job.tier.value,
        "count": job.count,
        "base_seed": job.base_seed,
        "run_id": job.run_id,
        "max_concurrency": max_concurrency,
    }
    optional = {
        "prompt": job.prompt,
        "headroom": job.headroom,
        "provider": provider.value if provider is not None else None,
        "store_url": store_url,
    }
    return params | {name: value for name, value in optional.items() if value is not None}


def _deployment_failure(output: str, returncode: int, deployment: str, run_id: str, api_url: str | None) -> ScenarioError:
    """What a failed ``prefect deployment run`` means, from its output: no server, no deployment, or a failed run."""
    lowered = output.lower()
    if "connecterror" in lowered or "connection attempts failed" in lowered or "connection refused" in lowered:
        return _unreachable_api(api_url or "(the Prefect profile's PREFECT_API_URL)", "connection refused")
    if "not found" in lowered and "deployment" in lowered:
        return ConfigError(
            f"no deployment {deployment!r} on the Prefect server: deploy them with `prefect deploy --all` "
            "(scripts/stack.sh up does), or name another with --deployment"
        )
    last = " | ".join(line.strip() for line in output.strip().splitlines()[-6:])
    return ScenarioError(
        f"the flow run of {deployment} failed (prefect exit {returncode}): {last}; see the Prefect UI "
        f"for its logs, then resume with --run-id {run_id}"
    )


@app.command()
def generate(
    tier: Annotated[
        str | None, typer.Option(help="1 | 2 | tier1 | tier2 | test_dummy; picks the preset prompt and families.")
    ] = None,
    count: Annotated[int, typer.Option(help="Scenarios to generate (accepted ones).")] = 1,
    prompt: Annotated[
        str | None, typer.Option(help="What to build; without --tier the tier is inferred from its words.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="offline | openai | anthropic | gemini.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name; default: the provider's.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature, 0..2.")] = None,
    seed: Annotated[int, typer.Option(help="The first seed of the run.")] = 0,
    headroom: Annotated[
        int | None, typer.Option(help="Extra seeds allowed for failures; default: as many as --count.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Seeds generated at once.")] = 4,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Continue this run: seeds it finished are not redone.")
    ] = None,
    store: StoreOption = None,
    via_deployment: Annotated[
        bool, typer.Option("--via-deployment", help="Run through the Prefect deployment generate/<tier>.")
    ] = False,
    deployment: Annotated[
        str | None, typer.Option(help="With --via-deployment: the deployment; default generate/<tier>.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Generate COUNT validated scenarios of a tier (or from a prompt); exit 1 when fewer passed.

    Passed scenarios land in staging/{run_id}_{seed}/, failed ones in failures/, the run record in
    runs/{run_id}.json. Ctrl-C stops at once; --run-id with the printed id resumes.
    """
    from scenario_lib.runs.generation import GenerationJob, new_run_id

    chosen_tier, inferred = run_guarded(lambda: choose_tier(tier, prompt))
    chosen_provider = run_guarded(lambda: parse_provider(provider)) if provider is not None else None
    if not 1 <= concurrency <= 64:
        fail(f"--concurrency must be from 1 to 64 seeds at once, got {concurrency}")
    if via_deployment and (model is not None or temperature is not None):
        fail(
            "--model and --temperature are not parameters of the deployment (its worker's settings choose them); "
            "drop them, or run without --via-deployment"
        )
    job = run_guarded(
        lambda: GenerationJob(
            run_id=run_id or new_run_id(chosen_tier),
            tier=chosen_tier,
            count=count,
            prompt=prompt,
            base_seed=seed,
            headroom=headroom,
        )
    )
    settings = load_cli_settings(store_url=store)
    out = error_console if as_json else console
    if inferred:
        out.print(f"tier {chosen_tier.value} inferred from the prompt (pass --tier to choose)", highlight=False)
    given = {
        "--prompt": prompt,
        "--provider": provider,
        "--model": model,
        "--temperature": temperature,
        "--seed": seed or None,
        "--headroom": headroom,
        "--store": store,
        "--via-deployment": via_deployment or None,
    }
    resume_command = _resume_command(job, given)
    if via_deployment:
        dataset = open_cli_store(settings)
        name = deployment or f"generate/{chosen_tier.value}"
        out.print(f"run {job.run_id} via deployment {name}", highlight=False)
        with exit_on_interrupt(f"resume with: {resume_command}"), SeedProgress(out, job.run_id, job.count) as display:
            summary = run_guarded(
                lambda: run_via_deployment(
                    job,
                    dataset,
                    display,
                    provider=chosen_provider,
                    store_url=store,
                    max_concurrency=concurrency,
                    deployment=name,
                )
            )
    else:
        llm = run_guarded(lambda: llm_for(settings, provider=chosen_provider, model=model, temperature=temperature))
        out.print(
            f"run {job.run_id}: {job.count} {chosen_tier.value} scenario(s) with {llm.provider.value}:{llm.model}"
        )
        run_settings = settings.model_copy(update={"llm": llm})
        summary, dataset = _generate_here(job, run_settings, out, concurrency=concurrency, resume_command=resume_command)
    if as_json:
        write_stdout(summary.model_dump_json(indent=2))
    else:
        print_run_summary(summary, dataset)
    if not summary.complete:
        fail(
            f"run {summary.run_id} fell short: {summary.passed}/{summary.count} scenarios passed in "
            f"{len(summary.outcomes)} seeds; try more seeds with --run-id {summary.run_id} --headroom N "
            "(finished seeds are kept), or see the failures with `scenarios list failures`",
            code=1,
        )
