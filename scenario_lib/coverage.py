"""Coverage and diversity of a set of scenarios, from their families and drawn parameters.

- *coverage* of a parameter: the share of 10 equal bins, spanning the values every scenario of the family
  drew (failed ones included), that hold at least one accepted scenario;
- *diversity* of the accepted set: the mean pairwise distance between accepted scenarios, where two
  scenarios of different families are 1 apart and two of one family are the RMS over their parameters
  of the relative difference ``|a - b| / (|a| + |b|)`` (0..1); plus the normalised entropy of the
  family mix (0: one family, 1: every family the tiers offer equally often).

Pure functions: the analysis of runs (`scenario_lib.insight.analysis`) and a benchmark's card
(`scenario_lib.runs.benchmark_card`) both use them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from scenario_lib.tiers import TIER_PRESETS, Tier

COVERAGE_BINS = 10


@dataclass(frozen=True)
class ScenarioFacts:
    """What a stored scenario folder says about one seed."""

    scenario_id: str
    family: str
    passed: bool
    parameters: Mapping[str, float] = field(default_factory=dict)
    stage_time_s: Mapping[str, float] = field(default_factory=dict)


class ParameterCoverage(BaseModel):
    family: str
    parameter: str
    accepted: int
    low: float
    high: float
    bins_filled: int
    bins: int
    coverage: float


class Diversity(BaseModel):
    accepted: int
    families: int
    family_entropy: float = Field(description="Shannon entropy of the family mix / log(families the tiers offer)")
    mean_pairwise_distance: float
    per_family: dict[str, float] = Field(default_factory=dict)


def parameter_coverage(facts: Mapping[str, ScenarioFacts], bins: int = COVERAGE_BINS) -> list[ParameterCoverage]:
    """Per family and parameter, how much of the explored range the accepted scenarios fill."""
    by_family: dict[str, list[ScenarioFacts]] = defaultdict(list)
    for fact in facts.values():
        by_family[fact.family].append(fact)
    rows = []
    for family, members in sorted(by_family.items()):
        names = sorted({name for fact in members for name in fact.parameters})
        for name in names:
            values = [fact.parameters[name] for fact in members if name in fact.parameters]
            accepted = [fact.parameters[name] for fact in members if fact.passed and name in fact.parameters]
            low, high = min(values), max(values)
            if high - low <= 1e-12 * max(1.0, abs(high)):
                filled, count = (1 if accepted else 0), 1
            else:
                count = bins
                filled = len({min(bins - 1, int((value - low) / (high - low) * bins)) for value in accepted})
            rows.append(
                ParameterCoverage(
                    family=family,
                    parameter=name,
                    accepted=len(accepted),
                    low=low,
                    high=high,
                    bins_filled=filled,
                    bins=count,
                    coverage=round(filled / count, 6),
                )
            )
    return rows


def _family_distances(members: Sequence[ScenarioFacts]) -> tuple[float, int]:
    """(sum of pairwise distances, number of pairs) within one family.

    Per parameter the distance is the relative difference ``|a - b| / (|a| + |b|)`` (0..1, scale-free:
    millimetres and ratios weigh alike, and adding scenarios does not change a pair's distance); a
    parameter only one of the two has counts 1. A pair's distance is the RMS over the parameters.
    """
    import numpy as np

    count = len(members)
    if count < 2:
        return 0.0, 0
    names = sorted({name for fact in members for name in fact.parameters})
    if not names:
        return 0.0, math.comb(count, 2)
    matrix = np.array([[fact.parameters.get(name, np.nan) for name in names] for fact in members], dtype=float)
    total = 0.0
    for index in range(count - 1):
        row, rest = matrix[index], matrix[index + 1 :]
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.abs(row) + np.abs(rest)
            parts = np.where(scale > 0, np.abs(row - rest) / np.where(scale > 0, scale, 1.0), 0.0)
        parts = np.where(np.isnan(row) ^ np.isnan(rest), 1.0, parts)  # only one of the pair has it
        parts = np.where(np.isnan(row) & np.isnan(rest), 0.0, parts)
        total += float(np.sqrt(np.mean(parts**2, axis=1)).sum())
    return total, math.comb(count, 2)


def diversity(facts: Sequence[ScenarioFacts], tiers: Sequence[str] = ()) -> Diversity:
    """Diversity of accepted scenarios (see the module docstring); ``tiers`` bound the family entropy."""
    accepted = [fact for fact in facts if fact.passed]
    by_family: dict[str, list[ScenarioFacts]] = defaultdict(list)
    for fact in accepted:
        by_family[fact.family].append(fact)
    known_tiers = {tier.value: tier for tier in Tier}
    offered = {family for name in tiers if name in known_tiers for family in TIER_PRESETS[known_tiers[name]].families}
    offered |= set(by_family)
    shares = [len(members) / len(accepted) for members in by_family.values()] if accepted else []
    entropy = -sum(share * math.log(share) for share in shares if share > 0)
    normalised_entropy = entropy / math.log(len(offered)) if len(offered) > 1 else 0.0
    per_family: dict[str, float] = {}
    within_sum, within_pairs = 0.0, 0
    for family, members in sorted(by_family.items()):
        total, pairs = _family_distances(members)
        per_family[family] = round(total / pairs, 6) if pairs else 0.0
        within_sum += total
        within_pairs += pairs
    all_pairs = math.comb(len(accepted), 2)
    cross_pairs = all_pairs - within_pairs  # pairs from two families: distance 1
    mean = (within_sum + cross_pairs) / all_pairs if all_pairs else 0.0
    return Diversity(
        accepted=len(accepted),
        families=len(by_family),
        family_entropy=round(normalised_entropy, 6),
        mean_pairwise_distance=round(mean, 6),
        per_family=per_family,
    )


__all__ = ["COVERAGE_BINS", "Diversity", "ParameterCoverage", "ScenarioFacts", "diversity", "parameter_coverage"]
