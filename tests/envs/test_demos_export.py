"""`scenarios demos export`: the stored demonstrations of a real benchmark as Minari datasets, read back with
``minari.load_dataset`` and replayed through ``recover_environment()`` (real Minari, real MuJoCo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium
import minari
import mujoco
import numpy as np
import pytest

from scenario_lib.envs import ENV_ID, ScenarioEnv
from scenario_lib.envs.minari_export import dataset_id
from tests.benchmark_fixtures import PromotedBenchmark, promoted_benchmark  # noqa: F401
from tests.support import invoke_cli




@pytest.fixture(scope="module")
def exported(promoted_benchmark: PromotedBenchmark, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("minari")
    result = invoke_cli(["demos", "export", "v1", "--out", str(out), "--json", "--store", promoted_benchmark.store_url], out)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_one_dataset_per_scenario_with_its_demonstration_as_the_episode(
    promoted_benchmark: PromotedBenchmark, exported: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, payload = exported
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ids = sorted(promoted_benchmark.ids.values())
    assert [row["scenario_id"] for row in payload["datasets"]] == ids
    assert {key.removeprefix("scenarios/v1/") for key in minari.list_local_datasets()} == {f"{i}-v0" for i in ids}
    for scenario_id in ids:
        dataset = minari.load_dataset(dataset_id("v1", scenario_id))
        env = gymnasium.make(ENV_ID, benchmark="v1", scenario_id=scenario_id, store=promoted_benchmark.store_url)
        unwrapped = env.unwrapped
        assert isinstance(unwrapped, ScenarioEnv)
        demonstration = unwrapped.demonstration
        assert dataset.total_episodes == 1  # the one stored demonstration
        assert dataset.observation_space == env.observation_space and dataset.action_space == env.action_space
        episode = next(dataset.iterate_episodes())
        steps = len(episode.actions)
        assert dataset.total_steps == steps <= len(demonstration.actions)
        assert np.array_equal(episode.actions, np.asarray(demonstration.actions[:steps]))
        for key, space in env.observation_space.spaces.items():  # type: ignore[attr-defined]
            assert episode.observations[key].shape == (steps + 1, *space.shape), key
        assert episode.terminations[-1] and not episode.truncations.any() and episode.infos["success"][-1]
        # The final state is the demonstration's at that step.
        reference = mujoco.MjData(unwrapped.model)
        reference.qpos[:] = demonstration.qpos[steps - 1]
        mujoco.mj_kinematics(unwrapped.model, reference)
        final = episode.observations["body_position_m"][-1]
        assert np.array_equal(final, reference.xpos[[body.body_id for body in unwrapped.bodies]])
        env.close()


def test_the_recorded_spec_recovers_the_environment_from_the_store(
    promoted_benchmark: PromotedBenchmark, exported: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = exported
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    scenario_id = promoted_benchmark.ids["stacking"]
    dataset = minari.load_dataset(dataset_id("v1", scenario_id))
    assert dataset.spec.env_spec is not None
    assert dataset.spec.env_spec.kwargs == {"benchmark": "v1", "scenario_id": scenario_id, "store": promoted_benchmark.store_url}
    env = dataset.recover_environment()
    episode = next(dataset.iterate_episodes())
    observation, _ = env.reset(seed=0)
    for action in episode.actions:
        observation, *_ = env.step(action)
    for key in observation:
        assert np.array_equal(np.asarray(observation[key]), episode.observations[key][-1]), key
    env.close()


def test_exporting_again_needs_overwrite(promoted_benchmark: PromotedBenchmark, exported: tuple[Path, dict[str, Any]]) -> None:
    out, payload = exported
    again = invoke_cli(["demos", "export", "v1", "--out", str(out), "--store", promoted_benchmark.store_url], out)
    assert again.exit_code != 0 and again.stderr.strip().startswith("error:")
    assert "exists already" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.output
    replaced = invoke_cli(["demos", "export", "v1", "--out", str(out), "--overwrite", "--store", promoted_benchmark.store_url], out)
    assert replaced.exit_code == 0, replaced.output
    assert "minari.load_dataset" in replaced.stdout and dataset_id("v1", payload["datasets"][0]["scenario_id"]) in replaced.stdout
