"""`scenarios evaluate` and `scenario_lib.envs.evaluation` on a real promoted benchmark: a user's policy beside
the zero, random and demo baselines, the stored record, the output formats and one-line errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from scenario_lib.envs.benchmark import open_benchmark
from scenario_lib.envs.evaluation import EvaluationRecord, evaluate_benchmark, read_evaluation
from scenario_lib.envs.policies import load_policy
from scenario_lib.store.layout import benchmark_manifest_key, evaluations_prefix
from tests.benchmark_fixtures import TIER_FAMILIES, PromotedBenchmark, promoted_benchmark  # noqa: F401
from tests.support import assert_one_line_error, invoke_cli

USER_POLICIES = '''
import numpy as np


def replay_demonstration(env):
    """A user's policy: the stored demonstration, then its last action held."""
    actions = env.unwrapped.demonstration.actions
    step = 0

    def policy(observation):
        nonlocal step
        action = np.asarray(actions[min(step, len(actions) - 1)])
        step += 1
        return action

    return policy


def wrong_shape(env):
    return lambda observation: np.zeros(3)


def broken(env):
    def policy(observation):
        raise RuntimeError("the network is not loaded")

    return policy


not_callable = 42
'''






@pytest.fixture
def user_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A policy module in the working folder, importable as ``my_policies`` (as from a shell there)."""
    (tmp_path / "my_policies.py").write_text(USER_POLICIES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_policies"


def figures_by_policy(payload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {policy["policy"]: policy for policy in payload["policies"]}


def test_a_user_policy_is_evaluated_beside_the_baselines_and_stored(
    promoted_benchmark: PromotedBenchmark, user_policies: str, tmp_path: Path
) -> None:
    name = f"{user_policies}:replay_demonstration"
    result = invoke_cli(["evaluate", "v1", "--policy", name, "--episodes", "2", "--json", "--store", promoted_benchmark.store_url], tmp_path)

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    policies = figures_by_policy(payload)
    assert list(policies) == [name, "zero", "random", "demo"]
    assert policies[name]["figures"]["success_rate"] == 1.0 == policies["demo"]["figures"]["success_rate"]
    assert policies["zero"]["figures"]["success_rate"] == 0.0
    assert policies["zero"]["figures"]["mean_normalized_return"] == pytest.approx(-1.0, abs=0.01)
    assert policies[name]["figures"]["mean_normalized_return"] > -0.5
    for scenario in policies[name]["scenarios"]:
        assert len(scenario["episodes"]) == 2 and scenario["figures"]["mean_steps_to_success"] > 0
    manifest = promoted_benchmark.store.read_bytes(benchmark_manifest_key("v1"))
    assert payload["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert payload["seeds"] == [0, 1] and payload["benchmark"] == "v1"
    stored = read_evaluation(promoted_benchmark.store, "v1", payload["evaluation_id"])
    assert payload["stored_at"] == promoted_benchmark.store.url_for(f"{evaluations_prefix('v1')}/{payload['evaluation_id']}.json")
    assert stored == EvaluationRecord.model_validate({k: v for k, v in payload.items() if k != "stored_at"})


def test_the_table_and_csv_show_every_scenario_and_the_overall_figures(
    promoted_benchmark: PromotedBenchmark, tmp_path: Path
) -> None:
    store = ["--store", promoted_benchmark.store_url]
    table = invoke_cli(["evaluate", "v1", "--policy", "demo", "--episodes", "1", "--no-save", *store], tmp_path)
    assert table.exit_code == 0, table.output
    for scenario_id in [*promoted_benchmark.ids.values(), "overall"]:
        assert scenario_id in table.stdout
    assert "zero" in table.stdout and "random" in table.stdout and "100%" in table.stdout
    assert "stored at" not in table.stdout

    folder_url = f"{promoted_benchmark.store_url}/benchmarks/v1"
    output = invoke_cli(["evaluate", folder_url, "--policy", "zero", "--episodes", "1", "--no-baselines", "--format", "csv"], tmp_path)
    assert output.exit_code == 0, output.output
    rows = list(csv.DictReader(io.StringIO(output.stdout)))
    assert [row["scenario"] for row in rows] == [*sorted(promoted_benchmark.ids.values()), "overall"]
    assert {row["policy"] for row in rows} == {"zero"} and {row["success_rate"] for row in rows} == {"0.0"}


def test_the_baselines_over_the_tier_families(promoted_benchmark: PromotedBenchmark) -> None:
    """The bars: the demonstration succeeds everywhere, the zero policy nowhere, random in at most 5 %."""
    benchmark = open_benchmark("v1", store=promoted_benchmark.store)
    record = evaluate_benchmark(benchmark, [load_policy(name) for name in ("demo", "zero", "random")], episodes=4)
    tier_ids = {promoted_benchmark.ids[family] for family in TIER_FAMILIES}
    rates = {}
    for policy in record.policies:
        episodes = [e for s in policy.scenarios if s.scenario_id in tier_ids for e in s.episodes]
        rates[policy.policy] = sum(e.success for e in episodes) / len(episodes)
    assert rates["demo"] == 1.0 and rates["zero"] == 0.0 and rates["random"] <= 0.05
    demo = record.policies[0]
    assert all(s.figures.success_rate == 1.0 for s in demo.scenarios)  # test_dummy too
    again = evaluate_benchmark(benchmark, [load_policy("random")], episodes=4)
    assert again.comparable_with(record) and again.policies[0] == record.policies[2]
    shifted = evaluate_benchmark(benchmark, [load_policy("zero")], episodes=1, base_seed=5)
    assert not shifted.comparable_with(record)


@pytest.mark.parametrize(
    ("arguments", "needles"),
    [
        (["evaluate", "nope", "--policy", "zero"], ("unknown benchmark 'nope'", "benchmarks there: v1")),
        (["evaluate", "v1", "--policy", "absent_module:make"], ("cannot import policy 'absent_module:make'", "No module named")),
        (["evaluate", "v1", "--policy", "my_policies:missing"], ("has no attribute 'missing'",)),
        (["evaluate", "v1", "--policy", "my_policies:not_callable"], ("not a callable",)),
        (["evaluate", "v1", "--policy", "make_it_up"], ("neither a built-in",)),
        (["evaluate", "v1", "--policy", "my_policies:wrong_shape"], ("my_policies:wrong_shape", "got shape (3,)")),
        (["evaluate", "v1", "--policy", "my_policies:broken"], ("RuntimeError", "the network is not loaded")),
        (["evaluate", "file:///nowhere/benchmarks/v1", "--policy", "zero"], ("no benchmark folder",)),
        (["demos", "export", "nope", "--out", "minari"], ("unknown benchmark 'nope'",)),
    ],
    ids=["unknown-benchmark", "no-module", "no-attribute", "not-callable", "not-a-reference", "wrong-shape", "policy-raises", "no-folder", "export-unknown"],
)
def test_bad_input_is_a_one_line_error(
    promoted_benchmark: PromotedBenchmark, user_policies: str, tmp_path: Path, arguments: list[str], needles: tuple[str, ...]
) -> None:
    store = [] if "://" in arguments[1 if arguments[0] == "evaluate" else 2] else ["--store", promoted_benchmark.store_url]
    result = invoke_cli([*arguments, "--no-save", *store] if arguments[0] == "evaluate" else [*arguments, *store], tmp_path)
    assert_one_line_error(result, *needles)
