"""Evaluating policies on a benchmark: episodes per scenario, the figures, and the stored record.

Per episode: success (the environment terminated: the success condition held for its window), the steps
to success (the step at which that final success began), the return, and the normalized return, the
return divided by the step limit: about -1 when nothing came closer to the goal, near 0 (above it with
the success bonus) for a quick solve, so it compares across scenarios of different lengths.

Episode ``i`` of every scenario and policy resets with seed ``base_seed + i`` and seeds the action space
with it too (the ``random`` baseline samples it). A record (`EvaluationRecord`) names the policies, the
benchmark's manifest hash and the seeds: two records with the same hash and seeds evaluated the same
episodes, so their figures compare. Records are stored as ``evaluations/<dest>/<evaluation_id>.json``.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import gymnasium
from pydantic import BaseModel, ConfigDict, Field

from scenario_lib.envs.benchmark import Benchmark
from scenario_lib.envs.policies import BuiltinPolicy, PolicyFactory
from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store import DatasetStore
from scenario_lib.store.layout import evaluation_key

EVALUATION_FORMAT_VERSION = 1
OVERALL = "overall"
EpisodeCallback = Callable[[str, str], None]  # (policy name, scenario id), after each episode


class EpisodeResult(BaseModel):
    """One episode of one policy on one scenario."""

    model_config = ConfigDict(frozen=True)

    seed: int
    success: bool
    steps: int
    steps_to_success: int | None = None
    episode_return: float
    normalized_return: float


class Figures(BaseModel):
    """Success rate, mean steps to success (over successful episodes) and mean normalized return."""

    model_config = ConfigDict(frozen=True)

    episodes: int
    success_rate: float
    mean_steps_to_success: float | None
    mean_normalized_return: float


def _figures(episodes: Sequence[EpisodeResult]) -> Figures:
    steps = [episode.steps_to_success for episode in episodes if episode.steps_to_success is not None]
    return Figures(
        episodes=len(episodes),
        success_rate=sum(episode.success for episode in episodes) / len(episodes),
        mean_steps_to_success=statistics.fmean(steps) if steps else None,
        mean_normalized_return=statistics.fmean(episode.normalized_return for episode in episodes),
    )


class ScenarioResult(BaseModel):
    """A policy's episodes on one scenario, and their figures."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    family: str
    tier: str
    step_limit: int
    figures: Figures
    episodes: list[EpisodeResult]


class PolicyResult(BaseModel):
    """A policy's results on every scenario, and the figures over all its episodes."""

    model_config = ConfigDict(frozen=True)

    policy: str
    builtin: bool
    figures: Figures
    scenarios: list[ScenarioResult]


class EvaluationRecord(BaseModel):
    """What ``scenarios evaluate`` ran and measured; stored as ``evaluations/<dest>/<evaluation_id>.json``."""

    model_config = ConfigDict(frozen=True)

    format_version: int = EVALUATION_FORMAT_VERSION
    evaluation_id: str
    benchmark: str
    store: str
    manifest_sha256: str
    scenario_ids: list[str]
    seeds: list[int]
    policies: list[PolicyResult]
    started_at: datetime
    duration_s: float
    versions: dict[str, str] = Field(default_factory=dict)

    def comparable_with(self, other: EvaluationRecord) -> bool:
        """Whether ``other`` ran the same episodes: the same benchmark manifest and the same seeds."""
        return self.manifest_sha256 == other.manifest_sha256 and self.seeds == other.seeds


def run_episode(env: gymnasium.Env[Any, Any], factory: PolicyFactory, seed: int, *, policy_name: str) -> EpisodeResult:
    """One episode of the policy ``factory`` makes, from ``env.reset(seed=seed)`` to termination or truncation."""
    from scenario_lib.envs.environment import ScenarioEnv

    scenario_env = env.unwrapped
    assert isinstance(scenario_env, ScenarioEnv)
    where = f"policy {policy_name!r} on scenario {scenario_env.scenario_id} (seed {seed})"
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    try:
        policy = factory(env)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{where}: the factory raised {type(err).__name__}: {err}") from err
    total = 0.0
    steps = 0
    success_since: int | None = None
    while True:
        try:
            action = policy(observation)
        except Exception as err:
            raise ConfigError(f"{where} raised {type(err).__name__} at step {steps + 1}: {err}") from err
        try:
            observation, reward, terminated, truncated, info = env.step(action)
        except ConfigError as err:
            raise ConfigError(f"{where}, step {steps + 1}: {err}") from None
        steps += 1
        total += float(reward)
        if info["success"]:
            success_since = steps if success_since is None else success_since
        else:
            success_since = None
        if terminated or truncated:
            break
    return EpisodeResult(
        seed=seed,
        success=bool(terminated),
        steps=steps,
        steps_to_success=success_since if terminated else None,
        episode_return=total,
        normalized_return=total / scenario_env.step_limit,
    )


def evaluate_benchmark(
    benchmark: Benchmark,
    policies: Sequence[tuple[str, PolicyFactory]],
    *,
    episodes: int = 10,
    base_seed: int = 0,
    on_episode: EpisodeCallback | None = None,
    **env_kwargs: Any,
) -> EvaluationRecord:
    """Run ``episodes`` episodes of every ``(name, factory)`` policy on every scenario of ``benchmark``."""
    from scenario_lib.envs.environment import ScenarioEnv
    from scenario_lib.validation.pipeline import library_versions

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
    if not policies:
        raise ConfigError("no policy to evaluate: give one (a built-in name or module:callable)")
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    seeds = [base_seed + index for index in range(episodes)]
    envs = benchmark.make_envs(**env_kwargs)
    try:
        results = []
        for name, factory in policies:
            scenarios = []
            for scenario_id, env in envs.items():
                unwrapped = env.unwrapped
                assert isinstance(unwrapped, ScenarioEnv)
                runs = []
                for seed in seeds:
                    runs.append(run_episode(env, factory, seed, policy_name=name))
                    if on_episode is not None:
                        on_episode(name, scenario_id)
                manifest = unwrapped.scenario.manifest
                scenarios.append(
                    ScenarioResult(
                        scenario_id=scenario_id,
                        family=manifest.family,
                        tier=manifest.tier,
                        step_limit=unwrapped.step_limit,
                        figures=_figures(runs),
                        episodes=runs,
                    )
                )
            every = [episode for scenario in scenarios for episode in scenario.episodes]
            builtin = name in {policy.value for policy in BuiltinPolicy}
            results.append(PolicyResult(policy=name, builtin=builtin, figures=_figures(every), scenarios=scenarios))
    finally:
        for env in envs.values():
            env.close()
    return EvaluationRecord(
        evaluation_id=_evaluation_id(started, policies[0][0]),
        benchmark=benchmark.dest,
        store=benchmark.store.url,
        manifest_sha256=benchmark.manifest_sha256,
        scenario_ids=list(benchmark.scenario_ids),
        seeds=seeds,
        policies=results,
        started_at=started,
        duration_s=round(time.perf_counter() - clock, 3),
        versions=library_versions(),
    )


def _evaluation_id(started: datetime, policy: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", policy).strip("-.")[:32] or "policy"
    return f"{started:%Y%m%dT%H%M%SZ}-{slug}-{uuid.uuid4().hex[:6]}"


def store_evaluation(store: DatasetStore, record: EvaluationRecord) -> str:
    """Write ``record`` to ``evaluations/<dest>/<evaluation_id>.json`` (never over another); returns its URL."""
    key = evaluation_key(record.benchmark, record.evaluation_id)
    if not store.create_bytes(key, record.model_dump_json(indent=1).encode()):
        raise StoreError(f"{store.url_for(key)} already exists; evaluation ids are unique, so evaluate again")
    return store.url_for(key)


def read_evaluation(store: DatasetStore, benchmark: str, evaluation_id: str) -> EvaluationRecord:
    """A stored evaluation record; StoreError when it is missing or not a record."""
    from scenario_lib.store.records import read_record

    return read_record(
        store,
        evaluation_key(benchmark, evaluation_id),
        EvaluationRecord,
        what="evaluation record",
        fix="run the evaluation again",
        format_version=EVALUATION_FORMAT_VERSION,
    )


def summary_rows(record: EvaluationRecord) -> list[dict[str, Any]]:
    """One row per (policy, scenario) and one ``overall`` row per policy: the figures the CLI prints."""
    rows: list[dict[str, Any]] = []
    for policy in record.policies:
        for scenario in [*policy.scenarios, None]:
            figures = policy.figures if scenario is None else scenario.figures
            rows.append(
                {
                    "policy": policy.policy,
                    "scenario": OVERALL if scenario is None else scenario.scenario_id,
                    "family": "" if scenario is None else scenario.family,
                    "episodes": figures.episodes,
                    "success_rate": figures.success_rate,
                    "mean_steps_to_success": figures.mean_steps_to_success,
                    "mean_normalized_return": figures.mean_normalized_return,
                }
            )
    return rows


__all__ = [
    "EVALUATION_FORMAT_VERSION",
    "EpisodeResult",
    "EvaluationRecord",
    "Figures",
    "PolicyResult",
    "ScenarioResult",
    "evaluate_benchmark",
    "read_evaluation",
    "run_episode",
    "store_evaluation",
    "summary_rows",
]
