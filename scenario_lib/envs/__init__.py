"""Benchmarks as Gymnasium environments: ``gymnasium.make("scenarios/Scenario-v0", path=...)``.

Importing this package registers `ENV_ID`; the environment itself (`ScenarioEnv`, on MuJoCo) loads
only when one is made. One environment per scenario of a benchmark comes from
``open_benchmark(name_or_url).make_envs()``; ``scenarios evaluate`` runs policies on them and
``scenarios demos export`` writes the stored demonstrations as Minari datasets. See ``docs/evaluate.md``.
"""

from __future__ import annotations

from scenario_lib.exports import lazy_exports

from gymnasium.envs.registration import register, registry

ENV_ID = "scenarios/Scenario-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="scenario_lib.envs.environment:ScenarioEnv", nondeterministic=False)

_EXPORTS: dict[str, str] = {
    "Benchmark": "benchmark",
    "BuiltinPolicy": "policies",
    "LoadedScenario": "sources",
    "ScenarioEnv": "environment",
    "evaluate_benchmark": "evaluation",
    "export_demonstrations": "minari_export",
    "load_policy": "policies",
    "open_benchmark": "benchmark",
}

__all__, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, eager=("ENV_ID",))
