"""Comparing groups of runs: do providers/models, temperatures or experiments differ on their seeds?

Per tier with two groups or more, every `SeedMetric` is tested: Kruskal-Wallis across all groups and
Mann-Whitney U for every pair (two-sided, scipy, imported only when called).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from scenario_lib.errors import ConfigError
from scenario_lib.insight.analysis import GroupBy, GroupStats, RunInput, group_key, group_stats, seed_outcomes
from scenario_lib.report import Verdict

if TYPE_CHECKING:
    from scenario_lib.runs.generation import SeedOutcome


class SeedMetric(str, Enum):
    """A per-seed outcome as a number, compared between groups."""

    PASSED = "passed"  # 0 or 1
    STAGES_PASSED = "stages_passed"  # 0 to the number of stages
    ATTEMPTS = "attempts"
    DURATION_S = "duration_s"
    TOKENS = "tokens"

    @property
    def measured(self) -> bool:
        """Whether the figure is measured while the seed runs (a reused seed has none)."""
        return self in (SeedMetric.DURATION_S, SeedMetric.TOKENS)


class MetricTest(BaseModel):
    metric: SeedMetric
    test: str  # "kruskal" or "mannwhitneyu"
    groups: list[str]
    statistic: float | None
    p_value: float | None
    note: str = ""


class Comparison(BaseModel):
    tier: str
    by: GroupBy
    groups: list[GroupStats]
    tests: list[MetricTest]


def seed_metric(outcome: SeedOutcome, metric: SeedMetric | str) -> float:
    """One per-seed outcome as a number (see `SeedMetric`); ConfigError for an unknown metric."""
    metric = _metric(metric)
    if metric is SeedMetric.PASSED:
        return float(outcome.passed)
    if metric is SeedMetric.STAGES_PASSED:
        return float(sum(verdict == Verdict.PASS.value for verdict in outcome.stage_verdicts.values()))
    if metric is SeedMetric.ATTEMPTS:
        return float(outcome.attempts)
    if metric is SeedMetric.DURATION_S:
        return outcome.duration_s
    return float(outcome.input_tokens + outcome.output_tokens)


def _metric(name: SeedMetric | str) -> SeedMetric:
    try:
        return SeedMetric(name)
    except ValueError:
        raise ConfigError(f"unknown metric {name!r}; metrics are {', '.join(m.value for m in SeedMetric)}") from None


def _test(metric: SeedMetric, name: str, samples: Mapping[str, list[float]]) -> MetricTest:
    from scipy import stats

    groups = list(samples)
    values = [value for sample in samples.values() for value in sample]
    if any(not sample for sample in samples.values()):
        return MetricTest(
            metric=metric, test=name, groups=groups, statistic=None, p_value=None, note="a group has no data"
        )
    if len(set(values)) <= 1:
        return MetricTest(
            metric=metric, test=name, groups=groups, statistic=None, p_value=None, note="all values are equal"
        )
    if name == "kruskal":
        result = stats.kruskal(*samples.values())
    else:
        first, second = samples.values()
        result = stats.mannwhitneyu(first, second, alternative="two-sided")
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return MetricTest(
        metric=metric,
        test=name,
        groups=groups,
        statistic=None if math.isnan(statistic) else round(statistic, 6),
        p_value=None if math.isnan(p_value) else round(p_value, 6),
    )


def compare_groups(
    runs: Sequence[RunInput],
    by: GroupBy = GroupBy.MODEL,
    *,
    tier: str | None = None,
    metrics: Sequence[SeedMetric | str] = tuple(SeedMetric),
) -> list[Comparison]:
    """Per tier (or only ``tier``) with two groups or more: the groups side by side and their tests."""
    chosen = [_metric(metric) for metric in metrics]
    per_tier: dict[str, dict[str, list[tuple[RunInput, SeedOutcome]]]] = defaultdict(lambda: defaultdict(list))
    for run, outcome in seed_outcomes(runs):
        if tier is None or run.summary.tier == tier:
            per_tier[run.summary.tier][group_key(run, by)].append((run, outcome))
    comparisons = []
    for tier_name, groups in sorted(per_tier.items()):
        if len(groups) < 2:
            continue
        names = sorted(groups)
        tests: list[MetricTest] = []
        for metric in chosen:
            samples = {
                name: [
                    seed_metric(outcome, metric)
                    for _, outcome in groups[name]
                    if not (metric.measured and outcome.reused)
                ]
                for name in names
            }
            tests.append(_test(metric, "kruskal", samples))
            for first, second in itertools.combinations(names, 2):
                tests.append(_test(metric, "mannwhitneyu", {first: samples[first], second: samples[second]}))
        comparisons.append(
            Comparison(
                tier=tier_name,
                by=by,
                groups=[group_stats(name, groups[name]) for name in names],
                tests=tests,
            )
        )
    return comparisons


__all__ = ["Comparison", "MetricTest", "SeedMetric", "compare_groups", "seed_metric"]
