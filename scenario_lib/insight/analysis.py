"""Analysis of generation runs: yield per stage and per group, cost per accepted scenario, coverage, diversity.

Input is what runs store: `RunSummary` records (one `SeedOutcome` per seed) and, per scenario, the facts
read from its folder (`ScenarioFacts`: family, drawn parameters, time per validation stage). The
computing functions are pure; `load_runs` and `load_scenario_facts` are the only ones that read the store.

Definitions used throughout:

- *yield* of a group: accepted seeds / seeds; *stage yield*: seeds that passed a stage / seeds that
  reached it (the review stage counts seeds whose code the reviewer rejected on every attempt);
- *per accepted scenario* (attempts, time, tokens, cost): the total spent on every seed of the group,
  failed ones included, divided by the accepted seeds. Seeds reused from an interrupted earlier try of a
  run carry no time or tokens, so they are left out of the time/token/cost figures (both sides);
- *coverage* and *diversity*: as `scenario_lib.coverage` defines them.

`scenario_lib.insight.comparison` tests whether groups differ; tables and plots of a report are the
CLI's (`scenario_lib.cli.analysis_tables`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from scenario_lib.errors import ConfigError
from scenario_lib.coverage import Diversity, ParameterCoverage, ScenarioFacts, diversity, parameter_coverage
from scenario_lib.report import STAGE_ORDER, Stage, Verdict

if TYPE_CHECKING:
    from scenario_lib.runs.generation import RunSummary, SeedOutcome
    from scenario_lib.store.dataset import DatasetStore



# --- inputs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInput:
    """A run to analyse, with what a batch knows about it (temperature and experiment)."""

    summary: RunSummary
    batch: str = ""
    experiment: str = ""
    temperature: float | None = None

    @property
    def model_key(self) -> str:
        return f"{self.summary.provider}:{self.summary.model or 'default'}"


class GroupBy(str, Enum):
    """How `compare_groups` splits seeds into groups."""

    MODEL = "model"  # provider:model
    PROVIDER = "provider"
    TEMPERATURE = "temperature"
    EXPERIMENT = "experiment"


def group_key(run: RunInput, by: GroupBy) -> str:
    if by is GroupBy.MODEL:
        return run.model_key
    if by is GroupBy.PROVIDER:
        return run.summary.provider
    if by is GroupBy.TEMPERATURE:
        return "unknown" if run.temperature is None else f"{run.temperature:g}"
    return run.experiment or run.summary.run_id


# --- reading the store ----------------------------------------------------------------------------------


def load_runs(store: DatasetStore, refs: Sequence[str] = ()) -> list[RunInput]:
    """The runs ``refs`` name (run ids or batch names; a batch stands for all its runs); none: every run."""
    from scenario_lib.runs.batch import iter_batch_runs
    from scenario_lib.store.layout import BATCHES_PREFIX
    from scenario_lib.runs.generation import read_run_record
    from scenario_lib.store.dataset import ObjectNotFoundError
    from scenario_lib.store.layout import RUNS_PREFIX

    def stored_names(prefix: str) -> list[str]:
        return [key.rsplit("/", 1)[-1].removesuffix(".json") for key in store.list_files(prefix, recursive=False)]

    if not refs:
        refs = stored_names(RUNS_PREFIX)
        if not refs:
            raise ConfigError(f"no runs in {store.url_for(RUNS_PREFIX)}: generate some first (scenarios generate)")
    batches = set(stored_names(BATCHES_PREFIX))
    runs: list[RunInput] = []
    seen: set[str] = set()
    for ref in refs:
        if ref in batches:
            for unit, summary in iter_batch_runs(store, ref):
                if summary.run_id not in seen:
                    seen.add(summary.run_id)
                    runs.append(RunInput(summary, batch=ref, experiment=unit.experiment, temperature=unit.temperature))
            continue
        try:
            summary = read_run_record(store, ref)
        except (ObjectNotFoundError, ConfigError):
            known = sorted(stored_names(RUNS_PREFIX))[-10:]
            raise ConfigError(
                f"{ref!r} is neither a run nor a batch in {store.describe()}; runs: {', '.join(known) or 'none'}; "
                f"batches: {', '.join(sorted(batches)) or 'none'}"
            ) from None
        if summary.run_id not in seen:
            seen.add(summary.run_id)
            runs.append(RunInput(summary))
    if not runs:
        raise ConfigError(f"no finished runs under {', '.join(refs)}: a batch lists its runs once they start")
    return runs


def scenario_folders(store: DatasetStore) -> dict[str, str]:
    """Where each scenario's folder is now: staging, failures or a benchmark (after promotion)."""
    from scenario_lib.store.commit import list_scenarios
    from scenario_lib.store.layout import (
        BENCHMARKS_PREFIX,
        FAILURES_PREFIX,
        STAGING_PREFIX,
        benchmark_folder_of,
        benchmark_prefix,
        join_key,
        parse_failure_folder,
    )

    folders: dict[str, str] = {}
    for name in list_scenarios(store, FAILURES_PREFIX):
        folders[parse_failure_folder(name)[0]] = join_key(FAILURES_PREFIX, name)
    for key in store.list_files(BENCHMARKS_PREFIX):
        if (found := benchmark_folder_of(key)) is not None:
            dest, scenario_id = found
            folders[scenario_id] = benchmark_prefix(dest, scenario_id)
    for name in list_scenarios(store, STAGING_PREFIX):
        folders[name] = join_key(STAGING_PREFIX, name)
    return folders


def load_scenario_facts(store: DatasetStore, runs: Sequence[RunInput]) -> dict[str, ScenarioFacts]:
    """Facts of every stored scenario of ``runs`` (seeds rejected in review have no folder and no facts)."""
    from scenario_lib.store.dataset import ObjectNotFoundError
    from scenario_lib.validation.artifacts import read_scenario_manifest, read_scenario_report

    wanted = {outcome.scenario_id for run in runs for outcome in run.summary.outcomes}
    facts: dict[str, ScenarioFacts] = {}
    for scenario_id, folder in scenario_folders(store).items():
        if scenario_id not in wanted:
            continue
        try:
            manifest, report = read_scenario_manifest(store, folder), read_scenario_report(store, folder)
        except ObjectNotFoundError:
            continue
        times: dict[str, float] = defaultdict(float)
        for seed_report in report.seeds:
            for result in seed_report.stages:
                if result.verdict is not Verdict.SKIPPED:
                    times[result.stage.value] += result.duration_s
        facts[scenario_id] = ScenarioFacts(
            scenario_id=scenario_id,
            family=manifest.family,
            passed=manifest.passed,
            parameters=dict(manifest.parameters),
            stage_time_s=dict(times),
        )
    return facts


# --- the report -----------------------------------------------------------------------------------------


class StageYield(BaseModel):
    stage: str
    reached: int
    passed: int
    failed: int
    yield_rate: float | None = Field(description="passed / reached")
    cumulative_rate: float | None = Field(description="passed / all seeds")


class GroupStats(BaseModel):
    key: str
    runs: int = 0
    seeds: int
    accepted: int
    yield_rate: float | None
    attempts_per_accepted: float | None
    time_per_accepted_s: float | None
    tokens_per_accepted: float | None
    cost_per_accepted_usd: float | None


class StageTime(BaseModel):
    stage: str
    scenarios: int
    mean_s: float
    total_s: float


class AnalysisReport(BaseModel):
    runs: list[str]
    seeds: int
    accepted: int
    yield_rate: float | None
    stages: list[StageYield]
    by_tier: list[GroupStats]
    by_family: list[GroupStats]
    by_model: list[GroupStats]
    by_temperature: list[GroupStats] = Field(default_factory=list)
    by_experiment: list[GroupStats] = Field(default_factory=list)
    stage_times: list[StageTime] = Field(default_factory=list)
    coverage: list[ParameterCoverage] = Field(default_factory=list)
    diversity: Diversity


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def seed_outcomes(runs: Sequence[RunInput]) -> list[tuple[RunInput, SeedOutcome]]:
    return [(run, outcome) for run in runs for outcome in run.summary.outcomes]


def group_stats(key: str, pairs: Sequence[tuple[RunInput, SeedOutcome]]) -> GroupStats:
    """Yield and cost per accepted scenario of one group of seeds (see the module docstring)."""
    outcomes = [outcome for _, outcome in pairs]
    accepted = sum(outcome.passed for outcome in outcomes)
    measured = [outcome for outcome in outcomes if not outcome.reused]
    measured_accepted = sum(outcome.passed for outcome in measured)
    costs = [outcome.cost_usd for outcome in measured]
    return GroupStats(
        key=key,
        runs=len({run.summary.run_id for run, _ in pairs}),
        seeds=len(outcomes),
        accepted=accepted,
        yield_rate=_ratio(accepted, len(outcomes)),
        attempts_per_accepted=_ratio(sum(outcome.attempts for outcome in outcomes), accepted),
        time_per_accepted_s=_ratio(sum(outcome.duration_s for outcome in measured), measured_accepted),
        tokens_per_accepted=_ratio(
            sum(outcome.input_tokens + outcome.output_tokens for outcome in measured), measured_accepted
        ),
        cost_per_accepted_usd=(
            None if any(cost is None for cost in costs) else _ratio(sum(c or 0.0 for c in costs), measured_accepted)
        ),
    )


def _grouped(
    pairs: Sequence[tuple[RunInput, SeedOutcome]], key: Callable[[RunInput, SeedOutcome], str]
) -> list[GroupStats]:
    groups: dict[str, list[tuple[RunInput, SeedOutcome]]] = defaultdict(list)
    for run, outcome in pairs:
        groups[key(run, outcome)].append((run, outcome))
    return [group_stats(name, members) for name, members in sorted(groups.items())]


def stage_yields(outcomes: Sequence[SeedOutcome]) -> list[StageYield]:
    """Per stage, from review to task: seeds that reached it, passed it and failed there."""
    total = len(outcomes)
    rejected = sum(outcome.stage_reached is Stage.REVIEW and not outcome.stage_verdicts for outcome in outcomes)
    rows = [
        StageYield(
            stage=Stage.REVIEW.value,
            reached=total,
            passed=total - rejected,
            failed=rejected,
            yield_rate=_ratio(total - rejected, total),
            cumulative_rate=_ratio(total - rejected, total),
        )
    ]
    for stage in STAGE_ORDER:
        verdicts = [outcome.stage_verdicts.get(stage.value) for outcome in outcomes]
        passed = verdicts.count(Verdict.PASS.value)
        failed = verdicts.count(Verdict.FAIL.value)
        rows.append(
            StageYield(
                stage=stage.value,
                reached=passed + failed,
                passed=passed,
                failed=failed,
                yield_rate=_ratio(passed, passed + failed),
                cumulative_rate=_ratio(passed, total),
            )
        )
    return rows


def stage_times(facts: Mapping[str, ScenarioFacts]) -> list[StageTime]:
    rows = []
    for stage in STAGE_ORDER:
        times = [fact.stage_time_s[stage.value] for fact in facts.values() if stage.value in fact.stage_time_s]
        rows.append(
            StageTime(
                stage=stage.value,
                scenarios=len(times),
                mean_s=round(sum(times) / len(times), 6) if times else 0.0,
                total_s=round(sum(times), 6),
            )
        )
    return rows


def analyze_runs(runs: Sequence[RunInput], facts: Mapping[str, ScenarioFacts] | None = None) -> AnalysisReport:
    """The full analysis of ``runs``; ``facts`` (from `load_scenario_facts`) add stage times, coverage, diversity."""
    if not runs:
        raise ConfigError("nothing to analyse: pass at least one run")
    facts = facts or {}
    pairs = seed_outcomes(runs)
    outcomes = [outcome for _, outcome in pairs]
    accepted = sum(outcome.passed for outcome in outcomes)
    wanted = {outcome.scenario_id for outcome in outcomes}
    own_facts = {sid: fact for sid, fact in facts.items() if sid in wanted}
    batch_runs = any(run.batch for run in runs)
    return AnalysisReport(
        runs=[run.summary.run_id for run in runs],
        seeds=len(outcomes),
        accepted=accepted,
        yield_rate=_ratio(accepted, len(outcomes)),
        stages=stage_yields(outcomes),
        by_tier=_grouped(pairs, lambda run, _: run.summary.tier),
        by_family=_grouped(pairs, lambda _, outcome: outcome.family),
        by_model=_grouped(pairs, lambda run, _: run.model_key),
        by_temperature=_grouped(pairs, lambda run, _: group_key(run, GroupBy.TEMPERATURE)) if batch_runs else [],
        by_experiment=_grouped(pairs, lambda run, _: group_key(run, GroupBy.EXPERIMENT)) if batch_runs else [],
        stage_times=stage_times(own_facts),
        coverage=parameter_coverage(own_facts),
        diversity=diversity(list(own_facts.values()), tiers=sorted({run.summary.tier for run in runs})),
    )


__all__ = [
    "AnalysisReport",
    "Diversity",
    "GroupBy",
    "GroupStats",
    "ParameterCoverage",
    "RunInput",
    "ScenarioFacts",
    "StageTime",
    "StageYield",
    "analyze_runs",
    "diversity",
    "group_stats",
    "load_runs",
    "load_scenario_facts",
    "parameter_coverage",
    "scenario_folders",
    "seed_outcomes",
    "stage_times",
    "stage_yields",
]
