"""Generate scenarios: one seed at a time (author → validate → commit to the store), and the run policy.

A *run* asks for ``count`` valid scenarios of a tier and may spend up to ``count + headroom`` seeds on
them. Seeds are ``base_seed, base_seed + 1, …``; `SeedSchedule` decides which seed starts next (a
sliding window: a new seed starts only while passed + running < count). Each seed is one agent run
(`generate_seed`); a passed seed lands in ``staging/{run_id}_{seed}/``, a failed one, with its script
and report, in ``failures/{run_id}_{seed}_a{attempts}/`` for RL. Both are committed atomically, so a
re-run of the same run id skips every finished seed (`finished_seeds`).

Orchestrators (the Prefect flow, the CLI) own the parallelism; this module owns what each seed does
and when a run is done.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, field_validator

from scenario_lib.validation.artifacts import (
    SCRIPT_FILE,
    ScenarioManifest,
    read_scenario_manifest,
    read_scenario_report,
    write_scenario_folder,
)
from scenario_lib.agent.state import StopReason
from scenario_lib.config import Settings, TraceExporter
from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.report import STAGE_ORDER, Stage, ValidationReport, Verdict
from scenario_lib.sandbox.command import HUGE_PAGES_AFTER_JOBS
from scenario_lib.store.commit import commit_scenario, is_committed, list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.records import read_record
from scenario_lib.store.layout import (
    FAILURES_PREFIX,
    STAGING_PREFIX,
    TRACES_PREFIX,
    failure_prefix,
    join_key,
    make_scenario_id,
    parse_scenario_id,
    run_record_key,
    scenario_id_of_folder,
    staging_prefix,
    validate_run_id,
)
from scenario_lib.tiers import TIER_PRESETS, Tier

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from opentelemetry.sdk.trace import TracerProvider

    from scenario_lib.agent.examples import ExampleScript
    from scenario_lib.agent.prompts import PromptSet
    from scenario_lib.sandbox.pool import SandboxPool
    from scenario_lib.validation.pipeline import Validator
    from scenario_lib.validation.service import RemoteValidator

MAX_COUNT = 10_000
MAX_HEADROOM = 10_000


class SeedOutcome(BaseModel):
    """What one seed of a run produced; crosses process boundaries (Prefect task results)."""

    scenario_id: str
    seed: int
    passed: bool
    stage_reached: Stage
    family: str = "unknown"
    attempts: int = 0
    # Why the seed's generation ended; None in run records written before it was kept. A seed reused
    # from failures/ ended with a failed validation: ATTEMPTS_EXHAUSTED.
    verdict: StopReason | None = None
    message: str = ""
    location: str = ""
    duration_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    stage_verdicts: dict[str, str] = Field(default_factory=dict)
    reused: bool = False  # finished by an earlier run of the same run id

    @field_validator("verdict", mode="before")
    @classmethod
    def _read_older_verdicts(cls, value: object) -> object:
        # Run records before the enum wrote "" for none and "failed" for a reused failed seed.
        return {"": None, "failed": StopReason.ATTEMPTS_EXHAUSTED.value}.get(value, value) if isinstance(value, str) else value


class StageCount(BaseModel):
    passed: int = 0
    failed: int = 0


class RunSummary(BaseModel):
    """A run's result: its request, every seed's outcome and per-stage counts. Stored at ``runs/{run_id}.json``."""

    run_id: str
    tier: str
    prompt: str
    provider: str
    model: str | None = None
    count: int
    base_seed: int
    headroom: int
    store_url: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    outcomes: list[SeedOutcome] = Field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not outcome.passed for outcome in self.outcomes)

    @property
    def complete(self) -> bool:
        return self.passed >= self.count

    def stage_counts(self) -> dict[str, StageCount]:
        """Per stage: how many seeds passed it and how many failed there (later stages are not counted)."""
        counts = {stage.value: StageCount() for stage in STAGE_ORDER}
        for outcome in self.outcomes:
            for stage, verdict in outcome.stage_verdicts.items():
                if stage in counts and verdict == Verdict.PASS.value:
                    counts[stage].passed += 1
                elif stage in counts and verdict == Verdict.FAIL.value:
                    counts[stage].failed += 1
        return counts

    def describe(self) -> str:
        """One line: passed/asked, seeds used and where the scenarios are."""
        state = "complete" if self.complete else "INCOMPLETE"
        return (
            f"run {self.run_id}: {self.passed}/{self.count} scenarios passed ({state}), {self.failed} failed seeds, "
            f"{self.duration_s:.1f} s; staged under {self.store_url.rstrip('/')}/{STAGING_PREFIX}/{self.run_id}_*"
        )


@dataclass(frozen=True)
class GenerationJob:
    """What a run generates; validated on construction."""

    run_id: str
    tier: Tier
    count: int
    prompt: str | None = None
    base_seed: int = 0
    headroom: int | None = None  # extra seeds allowed beyond count; None: as many as count

    def __post_init__(self) -> None:
        validate_run_id(self.run_id)
        try:
            object.__setattr__(self, "tier", Tier(self.tier))  # a plain "tier1" becomes Tier.TIER1
        except ValueError as err:
            raise ConfigError(
                f"unknown tier {self.tier!r}: use one of {', '.join(tier.value for tier in Tier)}"
            ) from err
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise ConfigError(f"count must be an integer from 1 to {MAX_COUNT}, got {self.count!r}")
        if self.headroom is not None and (not _is_int(self.headroom) or not 0 <= self.headroom <= MAX_HEADROOM):
            raise ConfigError(f"headroom must be from 0 to {MAX_HEADROOM} extra seeds, got {self.headroom!r}")
        if not _is_int(self.base_seed) or not 0 <= self.base_seed < 2**62:
            raise ConfigError(f"base seed must be an integer from 0 to 2**62, got {self.base_seed!r}")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ConfigError(f"the prompt must be text, got {type(self.prompt).__name__}")
        if self.prompt is not None and not self.prompt.strip():
            raise ConfigError("the prompt is empty: pass some text or leave it out to use the tier's prompt")

    @property
    def max_seeds(self) -> int:
        return self.count + (self.count if self.headroom is None else self.headroom)

    @property
    def effective_prompt(self) -> str:
        return self.prompt or TIER_PRESETS[self.tier].default_prompt

    def seeds(self) -> range:
        return range(self.base_seed, self.base_seed + self.max_seeds)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SeedSchedule:
    """Which seed to start next: keep ``passed + running < count`` and never exceed ``max_seeds`` seeds."""

    job: GenerationJob
    finished: dict[int, SeedOutcome] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.finished.values())

    def _candidate(self) -> int | None:
        if self.passed + len(self.running) >= self.job.count:
            return None
        return next((s for s in self.job.seeds() if s not in self.finished and s not in self.running), None)

    def next_seed(self) -> int | None:
        """Claim the next seed to start now, or None (enough passed or running, or the headroom is spent)."""
        seed = self._candidate()
        if seed is not None:
            self.running.add(seed)
        return seed

    def record(self, outcome: SeedOutcome) -> None:
        self.running.discard(outcome.seed)
        self.finished[outcome.seed] = outcome

    @property
    def done(self) -> bool:
        """Nothing is running and nothing more may start."""
        return not self.running and self._candidate() is None

    def outcomes(self) -> list[SeedOutcome]:
        return [self.finished[seed] for seed in sorted(self.finished)]


@dataclass(frozen=True)
class GenerationContext:
    """Everything a seed needs besides its number: the store, the validator, the model, tracing."""

    store: DatasetStore
    validator: Validator | RemoteValidator
    chat_model: BaseChatModel
    provider: str
    model: str | None
    max_attempts: int = 4
    render_preview: bool = True
    tracer_provider: TracerProvider | None = None
    capture_content: bool = True
    secrets: Sequence[str] = ()
    examples: Sequence[ExampleScript] | None = None  # few-shot library; None: the family templates
    prompts: PromptSet | None = None  # role instructions; None: the defaults


def hidden_paths_of(store: DatasetStore) -> list[str]:
    """What a sandbox beside ``store`` must not read: a local store's folder (its scenarios, their traces)."""
    return [str(store.local_root)] if store.local_root is not None else []


def make_sandbox_pool(
    settings: Settings,
    *,
    hidden_paths: Sequence[str] = (),
    seeds_at_once: int | None = None,
    huge_pages_after_jobs: int = HUGE_PAGES_AFTER_JOBS,
) -> SandboxPool:
    """A sandbox pool configured from settings (not started: workers start at the first build or warm-up).

    ``seeds_at_once``: the most seeds its user validates at once, when known: no more workers start
    than that (each seed's harness builds run as one series on one worker; a worker costs seconds of
    CPU to start, which a one-scenario run would spend for a few tens of milliseconds of builds).
    ``huge_pages_after_jobs``: see `SandboxPool` (the default suits a pool that lives as long as one run).
    """
    from scenario_lib.sandbox.limits import SandboxLimits
    from scenario_lib.sandbox.pool import SandboxPool

    sandbox = settings.sandbox
    return SandboxPool(
        workers=sandbox.workers if seeds_at_once is None else max(1, min(sandbox.workers, seeds_at_once)),
        limits=SandboxLimits(
            memory_mb=sandbox.memory_limit_mb,
            cpu_s=sandbox.cpu_limit_s,
            wall_s=sandbox.wall_limit_s,
            max_output_mb=sandbox.max_output_mb,
        ),
        mode=sandbox.mode,
        hidden_paths=hidden_paths,
        huge_pages_after_jobs=huge_pages_after_jobs,
    )


def make_validator(
    settings: Settings, *, seeds: int | None = None, hidden_paths: Sequence[str] = (), seeds_at_once: int | None = None
) -> Validator | RemoteValidator:
    """The validator the settings ask for; the caller closes it.

    With ``validation.service_socket`` set: the shared validation service there (`RemoteValidator`);
    otherwise a `Validator` with a sandbox pool (sized by ``seeds_at_once``, see `make_sandbox_pool`) and
    check workers of its own.
    """
    from scenario_lib.validation.check_pool import CheckPool, can_start_workers
    from scenario_lib.validation.pipeline import HarnessConfig, Validator
    from scenario_lib.validation.service import RemoteValidator

    validation = settings.validation
    config = HarnessConfig(
        seeds=seeds or validation.seeds,
        scale_low=validation.scale_low,
        scale_high=validation.scale_high,
        sim_duration_s=validation.sim_duration_s,
        mjcf_schema_path=validation.mjcf_schema_path,
        decomposition_cache_dir=validation.decomposition_cache_dir,
    )
    if validation.service_socket is not None:
        return RemoteValidator(validation.service_socket, config)
    pool = make_sandbox_pool(settings, hidden_paths=hidden_paths, seeds_at_once=seeds_at_once)
    pool.start()  # its workers import build123d while the caller sets up and the agent plans
    if not can_start_workers():
        return Validator(pool, config)
    checks = CheckPool(validation.check_workers)
    checks.start()  # the workers import their libraries while the sandbox starts and the agent plans
    return Validator(pool, config, checks)


@contextmanager
def open_generation_context(
    settings: Settings, *, trace_label: str = "spans", seeds_at_once: int | None = None
) -> Iterator[GenerationContext]:
    """Open the store, the sandbox pool, the chat model and tracing from settings; close them on exit.

    With the file exporter, the spans of everything run in the context land in the store as
    ``traces/{trace_label}-….jsonl`` when it closes (e.g. label it with the run id). ``seeds_at_once``:
    the most seeds the caller generates at once, when known (it bounds the sandbox workers).
    """
    from scenario_lib.agent.examples import family_examples, stored_examples
    from scenario_lib.agent.prompts import PromptSet
    from scenario_lib.agent.providers import make_chat_model
    from scenario_lib.tracing import configure_tracing

    store = DatasetStore.from_settings(settings.store)
    llm = settings.llm
    prompts = PromptSet.from_folder(llm.prompt_dir) if llm.prompt_dir else None
    # The few-shot library grows with use: the templates plus what this store has accepted.
    examples = [*family_examples(), *stored_examples(store)]
    secrets = settings.secret_values()
    chat_model = make_chat_model(llm)
    validator = make_validator(settings, hidden_paths=hidden_paths_of(store), seeds_at_once=seeds_at_once)
    # Spans are spooled to a local file and stored under traces/ when the context closes: one path
    # for a local folder and S3, which cannot append.
    spool_dir = Path(tempfile.mkdtemp(prefix="scenario-traces-"))
    tracing = settings.tracing
    if tracing.exporter is TraceExporter.FILE:
        tracing = tracing.model_copy(update={"file_path": str(spool_dir / "spans.jsonl")})
    tracer_provider = configure_tracing(tracing, secrets=secrets)
    try:
        yield GenerationContext(
            store=store,
            validator=validator,
            chat_model=chat_model,
            provider=llm.provider.value,
            model=llm.model,
            max_attempts=llm.max_attempts,
            render_preview=settings.validation.render_preview,
            tracer_provider=tracer_provider,
            capture_content=settings.tracing.capture_content,
            secrets=secrets,
            examples=examples,
            prompts=prompts,
        )
    finally:
        validator.close()
        tracer_provider.shutdown()
        store_spans(store, spool_dir / "spans.jsonl", label=trace_label)
        shutil.rmtree(spool_dir, ignore_errors=True)


def store_spans(store: DatasetStore, span_file: Path, *, label: str) -> str | None:
    """Copy a spooled span file to ``traces/{label}-{time}-{random}.jsonl``; returns its key (None if empty)."""
    if not span_file.is_file() or span_file.stat().st_size == 0:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    key = join_key(TRACES_PREFIX, f"{label}-{stamp}-{uuid.uuid4().hex[:8]}.jsonl")
    store.write_bytes(key, span_file.read_bytes())
    return key


def _stage_verdicts(report: ValidationReport) -> dict[str, str]:
    """Per stage, the worst verdict over the harness seeds (fail beats pass beats skipped)."""
    rank = {Verdict.FAIL: 2, Verdict.PASS: 1, Verdict.SKIPPED: 0}
    worst: dict[Stage, Verdict] = {}
    for seed_report in report.seeds:
        for result in seed_report.stages:
            if rank[result.verdict] > rank[worst.get(result.stage, Verdict.SKIPPED)]:
                worst[result.stage] = result.verdict
    return {stage.value: worst.get(stage, Verdict.SKIPPED).value for stage in STAGE_ORDER}


def finished_seeds(store: DatasetStore, run_id: str) -> dict[int, SeedOutcome]:
    """Seeds of ``run_id`` that an earlier try already committed, passed or failed."""
    validate_run_id(run_id)
    found: dict[int, SeedOutcome] = {}
    for prefix in (FAILURES_PREFIX, STAGING_PREFIX):  # staging last: a pass wins over an earlier failure
        for name in list_scenarios(store, prefix, named=f"{run_id}_"):
            try:
                scenario_id = scenario_id_of_folder(prefix, name)
            except ConfigError:
                continue
            owner, seed = parse_scenario_id(scenario_id)
            if owner != run_id:
                continue
            folder = join_key(prefix, name)
            manifest, report = read_scenario_manifest(store, folder), read_scenario_report(store, folder)
            found[seed] = SeedOutcome(
                scenario_id=scenario_id,
                seed=seed,
                passed=manifest.passed,
                stage_reached=Stage(manifest.stage_reached),
                family=manifest.family,
                attempts=manifest.attempt,
                verdict=StopReason.ACCEPTED if manifest.passed else StopReason.ATTEMPTS_EXHAUSTED,
                location=store.url_for(folder),
                stage_verdicts=_stage_verdicts(report),
                reused=True,
            )
    return found


def revalidate_scenario(store: DatasetStore, scenario_id: str, validator: Validator | RemoteValidator) -> tuple[ScenarioManifest, ValidationReport]:
    """Validate a staged scenario's script again with today's stages (its seed, so the same harness) and,
    when it still passes, commit the folder again with the new report, demonstration and manifest.

    Returns the new manifest (or the old one, unchanged, when the script no longer passes) and the new
    report. Benchmarks are not rewritten: promote the re-validated staging scenario again instead.
    """
    folder = staging_prefix(scenario_id)
    if not is_committed(store, folder):
        raise StoreError(
            f"no committed scenario {scenario_id!r} in {store.url_for(STAGING_PREFIX)}; `scenarios list staging` "
            "lists them (benchmarks are re-validated through their staging scenario, then promoted again)"
        )
    manifest = read_scenario_manifest(store, folder)
    source = store.read_bytes(join_key(folder, SCRIPT_FILE)).decode("utf-8")
    report, result = validator.validate_script(source, base_seed=manifest.seed)
    if not report.passed:
        return manifest, report
    with tempfile.TemporaryDirectory(prefix="scenario-") as scratch:
        local = Path(scratch) / scenario_id
        new_manifest = write_scenario_folder(
            local,
            scenario_id=scenario_id,
            tier=manifest.tier,
            prompt=manifest.prompt,
            author=manifest.author,
            source=source,
            report=report,
            result=result,
            attempt=manifest.attempt,
        )
        commit_scenario(store, local, folder)
    return new_manifest, report


def generate_seed(context: GenerationContext, job: GenerationJob, seed: int) -> SeedOutcome:
    """Author and validate one seed's scenario and commit it to staging (passed) or failures (failed).

    Exceptions that are not a verdict (store unreachable, sandbox broken, provider down) propagate, so
    the orchestrator can retry the seed; nothing half-written is visible.
    """
    from scenario_lib.agent import AgentOptions, GenerationRequest, run_agent

    started = time.perf_counter()
    scenario_id = make_scenario_id(job.run_id, seed)
    request = GenerationRequest(
        tier=job.tier, prompt=job.prompt, seed=seed, provider=context.provider, model=context.model
    )
    # The context's fields are named as the agent's options (tests/runs/test_generation.py checks they all are).
    option_names = AgentOptions.__required_keys__ | AgentOptions.__optional_keys__
    options = {name: getattr(context, name) for name in option_names}
    outcome = run_agent(request, **options)
    attempts = len(outcome.attempts)
    if outcome.report is None or outcome.seed_validation is None:
        # The reviewer rejected every attempt: nothing was validated, so there is nothing to store.
        return SeedOutcome(
            scenario_id=scenario_id,
            seed=seed,
            passed=False,
            stage_reached=Stage.REVIEW,
            attempts=attempts,
            verdict=outcome.verdict,
            message=outcome.message,
            duration_s=round(time.perf_counter() - started, 3),
            input_tokens=outcome.usage.input_tokens,
            output_tokens=outcome.usage.output_tokens,
            cost_usd=outcome.usage.cost_usd,
        )
    destination = staging_prefix(scenario_id) if outcome.accepted else failure_prefix(scenario_id, attempts)
    with tempfile.TemporaryDirectory(prefix="scenario-") as folder:
        manifest = write_scenario_folder(
            Path(folder) / scenario_id,
            scenario_id=scenario_id,
            tier=job.tier.value,
            prompt=job.effective_prompt,
            author=f"{context.provider}:{context.model or 'default'}",
            source=outcome.source,
            report=outcome.report,
            result=outcome.seed_validation,
            attempt=attempts,
        )
        commit_scenario(context.store, Path(folder) / scenario_id, destination)
    return SeedOutcome(
        scenario_id=scenario_id,
        seed=seed,
        passed=outcome.accepted,
        stage_reached=Stage(manifest.stage_reached),
        family=manifest.family,
        attempts=attempts,
        verdict=outcome.verdict,
        message=outcome.message,
        location=context.store.url_for(destination),
        duration_s=round(time.perf_counter() - started, 3),
        input_tokens=outcome.usage.input_tokens,
        output_tokens=outcome.usage.output_tokens,
        cost_usd=outcome.usage.cost_usd,
        stage_verdicts=_stage_verdicts(outcome.report),
    )


def new_run_id(tier: Tier | None, *, at: datetime | None = None, token: str | None = None) -> str:
    """A sortable, unique run id such as ``tier1-20261123-101501-3f2a``.

    ``at`` (default: now, UTC) and ``token`` (default: 4 random hex digits) let an orchestrator derive
    the id from its own run, so a retry gets the same id; without a tier the id starts with ``run``.
    """
    import secrets

    slug = tier.value.replace("_", "-") if tier is not None else "run"
    stamp = (at or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"{slug}-{stamp}-{token or secrets.token_hex(2)}"


def start_summary(job: GenerationJob, context: GenerationContext) -> RunSummary:
    return RunSummary(
        run_id=job.run_id,
        tier=job.tier.value,
        prompt=job.effective_prompt,
        provider=context.provider,
        model=context.model,
        count=job.count,
        base_seed=job.base_seed,
        headroom=job.max_seeds - job.count,
        store_url=context.store.url,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def write_run_record(store: DatasetStore, summary: RunSummary) -> str:
    """Store the run summary at ``runs/{run_id}.json``; returns its URL."""
    key = run_record_key(summary.run_id)
    store.write_bytes(key, summary.model_dump_json(indent=2).encode())
    return store.url_for(key)


def read_run_record(store: DatasetStore, run_id: str) -> RunSummary:
    """The stored summary of ``run_id`` (`ObjectNotFoundError` when there is none, `StoreError` when broken)."""
    return parse_run_record(store, run_record_key(run_id))


def parse_run_record(store: DatasetStore, key: str) -> RunSummary:
    """The run record at ``key``; `StoreError` naming it when it is not one."""
    fix = "move it aside: re-running the run id writes it again from the committed seeds"
    return read_record(store, key, RunSummary, what="run record", fix=fix)


__all__ = [
    "GenerationContext",
    "GenerationJob",
    "RunSummary",
    "SeedOutcome",
    "SeedSchedule",
    "StageCount",
    "finished_seeds",
    "generate_seed",
    "make_validator",
    "new_run_id",
    "open_generation_context",
    "parse_run_record",
    "read_run_record",
    "start_summary",
    "store_spans",
    "write_run_record",
]
