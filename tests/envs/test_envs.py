"""`scenario_lib.envs`: real promoted scenarios of every family as Gymnasium environments (real MuJoCo, the real
hand), their spaces, determinism, the stored demonstrations as action sequences, vector use and bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from scenario_lib.envs import ENV_ID, ScenarioEnv
from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store.commit import commit_scenario
from scenario_lib.store.layout import benchmark_prefix, staging_prefix
from scenario_lib.validation.artifacts import MANIFEST_FILE, TASK_FILE
from tests.benchmark_fixtures import FAMILIES, PromotedBenchmark, promoted_benchmark  # noqa: F401

Observation = dict[str, Any]


def make(promoted: PromotedBenchmark, family: str, **kwargs: Any) -> gymnasium.Env[Any, Any]:
    return gymnasium.make(ENV_ID, **promoted.env_kwargs(family), **kwargs)


def scenario_env(env: gymnasium.Env[Any, Any]) -> ScenarioEnv:
    unwrapped = env.unwrapped
    assert isinstance(unwrapped, ScenarioEnv)
    return unwrapped


def as_bytes(observation: Observation) -> bytes:
    return b"".join(np.asarray(observation[key]).tobytes() for key in sorted(observation))


def test_importing_the_package_registers_the_id_without_loading_mujoco() -> None:
    code = (
        "import sys, gymnasium, scenario_lib.envs as envs; "
        "print(envs.ENV_ID in gymnasium.registry, 'mujoco' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]


@pytest.mark.parametrize("family", FAMILIES)
def test_check_env_passes_for_a_scenario_of_every_family(promoted_benchmark: PromotedBenchmark, family: str) -> None:
    env = make(promoted_benchmark, family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # What check_env may say about our spaces by design: unbounded observations (velocities) and an action
    # space in the scene's units rather than [-1, 1] (it is the demonstrations' own actuation).
    expected = ("infinity", "symmetric and normalized")
    assert [str(w.message) for w in caught if not any(text in str(w.message) for text in expected)] == []
    env.close()


def test_reset_restores_the_validated_initial_state_and_the_same_calls_give_the_same_bytes(
    promoted_benchmark: PromotedBenchmark,
) -> None:
    env = make(promoted_benchmark, "stacking")
    model = scenario_env(env).model
    first, info = env.reset()
    assert np.array_equal(scenario_env(env).data.qpos, model.qpos0)
    assert info == {"success": False, "goal_distance": pytest.approx(scenario_env(env).initial_goal_distance)}
    assert first["goal_distance"].tolist() == [1.0]
    # No noise was asked for: a seed changes nothing.
    assert as_bytes(env.reset(seed=1)[0]) == as_bytes(first) == as_bytes(env.reset(seed=2)[0])

    def rollout(seed: int) -> list[bytes]:
        env.action_space.seed(seed)
        frames = [as_bytes(env.reset(seed=seed)[0])]
        for _ in range(40):
            observation, reward, *_ = env.step(env.action_space.sample())
            frames.append(as_bytes(observation) + np.float64(reward).tobytes())
        return frames

    assert rollout(7) == rollout(7)
    other = make(promoted_benchmark, "stacking")
    other.action_space.seed(7)
    replayed = [as_bytes(other.reset(seed=7)[0])]
    for _ in range(40):
        observation, reward, *_ = other.step(other.action_space.sample())
        replayed.append(as_bytes(observation) + np.float64(reward).tobytes())
    assert replayed == rollout(7)
    env.close()
    other.close()


def test_initial_position_noise_is_seeded_and_only_moves_the_free_bodies(promoted_benchmark: PromotedBenchmark) -> None:
    noise_m = 0.002
    env = make(promoted_benchmark, "peg_in_hole", initial_position_noise_m=noise_m)
    exact = make(promoted_benchmark, "peg_in_hole")
    start = exact.reset()[0]["body_position_m"]
    one, two, again = (env.reset(seed=seed)[0]["body_position_m"] for seed in (1, 2, 1))
    assert np.array_equal(one, again) and not np.array_equal(one, two)
    offset = one - start
    assert np.all(np.abs(offset[:, :2]) <= noise_m) and np.all(offset[:, 2] == 0.0)
    env.close()
    exact.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_stored_demonstration_is_a_valid_action_sequence_that_reaches_success(
    promoted_benchmark: PromotedBenchmark, family: str
) -> None:
    env = make(promoted_benchmark, family)
    unwrapped = scenario_env(env)
    demonstration = unwrapped.demonstration
    assert all(env.action_space.contains(np.array(action)) for action in demonstration.actions)
    assert unwrapped.step_limit == 3 * len(demonstration.actions)
    env.reset(seed=0)
    terminated = truncated = False
    steps = 0
    for action, recorded in zip(demonstration.actions, demonstration.qpos):
        observation, reward, terminated, truncated, info = env.step(np.array(action))
        steps += 1
        # The environment adds nothing to the physics: the state is the recorded one, bit for bit.
        assert unwrapped.data.qpos.tolist() == list(recorded)
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"]
    assert steps >= unwrapped.success_hold_steps
    assert observation["goal_distance"].tolist() == [0.0] and float(reward) == pytest.approx(1.0)
    # The observation's kinematics are those of the recorded state.
    reference = mujoco.MjData(unwrapped.model)
    reference.qpos[:] = demonstration.qpos[steps - 1]
    mujoco.mj_kinematics(unwrapped.model, reference)
    body_ids = [body.body_id for body in unwrapped.bodies]
    assert np.array_equal(observation["body_position_m"], reference.xpos[body_ids])
    env.close()


def test_the_observation_says_where_the_goal_is(promoted_benchmark: PromotedBenchmark) -> None:
    peg = make(promoted_benchmark, "peg_in_hole")
    observation, _ = peg.reset()
    zone = scenario_env(peg).scenario.task.success.zone  # type: ignore[union-attr]
    active = observation["goal_active"].astype(bool)
    assert active.sum() == 1
    assert np.allclose(observation["goal_zone_center_m"][active][0], np.asarray(zone.center_mm) / 1000)
    assert np.allclose(observation["goal_zone_half_extents_m"][active][0], np.asarray(zone.half_extents_mm) / 1000)
    assert observation["hand_grasping"] == 0
    lever = make(promoted_benchmark, "lever")
    observation, _ = lever.reset()
    unwrapped = scenario_env(lever)
    condition = unwrapped.scenario.task.success
    held = observation["goal_active"].astype(bool)
    start = unwrapped.model.qpos0[unwrapped.bodies[int(np.argmax(held))].qpos]
    low, high = observation["goal_joint_range"][held][0]
    assert (low, high) == pytest.approx((start + np.radians(condition.low), start + np.radians(condition.high)))  # type: ignore[union-attr]
    peg.close()
    lever.close()


def test_the_zero_action_leaves_the_scene_at_rest_until_truncation(promoted_benchmark: PromotedBenchmark) -> None:
    env = make(promoted_benchmark, "lever")
    observation, _ = env.reset()
    start = observation["body_position_m"]
    steps = 0
    truncated = terminated = False
    while not (terminated or truncated):
        observation, reward, terminated, truncated, info = env.step(np.zeros(9))
        steps += 1
        assert float(reward) == pytest.approx(-1.0, abs=0.01)
    assert truncated and not terminated and steps == scenario_env(env).step_limit
    assert np.allclose(observation["body_position_m"], start, atol=1e-4)
    env.close()


def test_sync_and_async_vector_envs_step_copies_of_a_scenario(promoted_benchmark: PromotedBenchmark) -> None:
    kwargs = promoted_benchmark.env_kwargs("slider")
    actions = np.asarray(make(promoted_benchmark, "slider").unwrapped.demonstration.actions)  # type: ignore[attr-defined]
    for vector_class in (gymnasium.vector.SyncVectorEnv, gymnasium.vector.AsyncVectorEnv):
        envs = vector_class([lambda: gymnasium.make(ENV_ID, **kwargs) for _ in range(2)])
        observations, _ = envs.reset(seed=[0, 1])
        assert observations["body_position_m"].shape == (2, 1, 3)
        done = np.zeros(2, dtype=bool)
        for action in actions:
            observations, rewards, terminated, truncated, infos = envs.step(np.stack([action, action]))
            done |= terminated
            if done.all():
                break
        assert done.all(), vector_class.__name__
        envs.close()


def test_rgb_array_frames_come_from_the_previews_camera(promoted_benchmark: PromotedBenchmark) -> None:
    env = make(promoted_benchmark, "hinged_door", render_mode="rgb_array", render_width=320, render_height=240)
    env.reset()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # a scene, not a blank buffer
    env.close()


@pytest.mark.parametrize(
    ("action", "needle"),
    [(np.zeros(3), "shape (9,)"), (np.full(9, np.nan), "finite"), ("grasp", "9 numbers")],
    ids=["short", "nan", "text"],
)
def test_a_bad_action_is_a_config_error_naming_the_layout(promoted_benchmark: PromotedBenchmark, action: Any, needle: str) -> None:
    env = make(promoted_benchmark, "push_box")
    env.reset()
    with pytest.raises(ConfigError, match=re.escape(needle)):
        env.step(action)
    env.close()


def test_a_local_path_and_a_file_url_load_the_same_scenario(promoted_benchmark: PromotedBenchmark) -> None:
    scenario_id = promoted_benchmark.ids["seesaw"]
    root = promoted_benchmark.store.local_root
    assert root is not None
    folder = root / benchmark_prefix(promoted_benchmark.dest, scenario_id)
    by_name = as_bytes(make(promoted_benchmark, "seesaw").reset()[0])
    for path in (str(folder), f"file://{folder}", f"{root}/benchmarks/{promoted_benchmark.dest}"):
        if path.endswith(promoted_benchmark.dest):
            env = gymnasium.make(ENV_ID, benchmark=path, scenario_id=scenario_id)
        else:
            env = gymnasium.make(ENV_ID, path=path)
        assert scenario_env(env).scenario_id == scenario_id
        assert as_bytes(env.reset()[0]) == by_name
        env.close()


def test_a_benchmark_on_s3_loads_with_the_settings_keys(
    promoted_benchmark: PromotedBenchmark, s3_store: Any, moto_s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from scenario_lib.runs.promotion import promote
    from tests.s3_server import ACCESS_KEY, SECRET_KEY

    scenario_id = promoted_benchmark.ids["push_box"]
    commit_scenario(s3_store, promoted_benchmark.folders[scenario_id], staging_prefix(scenario_id))
    promote(s3_store, [scenario_id], dest="remote")
    monkeypatch.setenv("SCENARIOS_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("SCENARIOS_STORE__ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("SCENARIOS_STORE__ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCENARIOS_STORE__SECRET_KEY", SECRET_KEY)
    local = as_bytes(make(promoted_benchmark, "push_box").reset()[0])
    by_url = gymnasium.make(ENV_ID, benchmark=f"{s3_store.url}/benchmarks/remote", scenario_id=scenario_id)
    by_path = gymnasium.make(ENV_ID, path=f"{s3_store.url}/benchmarks/remote/{scenario_id}")
    assert as_bytes(by_url.reset()[0]) == local == as_bytes(by_path.reset()[0])


def copy_folder(promoted: PromotedBenchmark, family: str, tmp_path: Path) -> Path:
    source = promoted.folders[promoted.ids[family]]
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_a_folder_without_task_json_names_the_revalidate_fix(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> None:
    folder = copy_folder(promoted_benchmark, "push_box", tmp_path)
    (folder / TASK_FILE).unlink()
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"] = [entry for entry in manifest["files"] if entry["path"] != TASK_FILE]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=rf"task\.json.*scenarios revalidate {folder.name}"):
        gymnasium.make(ENV_ID, path=str(folder))


def test_a_scene_changed_after_validation_is_refused(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> None:
    folder = copy_folder(promoted_benchmark, "push_box", tmp_path)
    scene = folder / "scene.xml"
    scene.write_text(scene.read_text().replace('timestep="0.002"', 'timestep="0.004"'))
    with pytest.raises(StoreError, match="scene.xml does not match the hash"):
        gymnasium.make(ENV_ID, path=str(folder))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"benchmark": "nope", "scenario_id": "x_0"}, "unknown benchmark 'nope'.*benchmarks there: v1"),
        ({"benchmark": "v1", "scenario_id": "ghost_0"}, "no scenario 'ghost_0'"),
        ({"benchmark": "v1"}, "needs scenario_id"),
        ({}, "give either path"),
    ],
    ids=["unknown-benchmark", "unknown-scenario", "no-id", "nothing"],
)
def test_naming_what_is_not_there_is_a_config_error(
    promoted_benchmark: PromotedBenchmark, kwargs: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        gymnasium.make(ENV_ID, **kwargs, **({"store": promoted_benchmark.store_url} if "benchmark" in kwargs else {}))


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no scenario folder"):
        gymnasium.make(ENV_ID, path=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="no benchmark folder"):
        gymnasium.make(ENV_ID, benchmark=f"file://{tmp_path}/benchmarks/v9", scenario_id="a_0")


def test_revalidating_an_old_folder_makes_it_loadable(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scenario_lib.cli import app
    from scenario_lib.store import DatasetStore

    folder = copy_folder(promoted_benchmark, "push_box", tmp_path / "old")
    (folder / TASK_FILE).unlink()
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"] = [entry for entry in manifest["files"] if entry["path"] != TASK_FILE]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    commit_scenario(store, folder, staging_prefix(folder.name))
    staged = tmp_path / "store" / staging_prefix(folder.name)
    with pytest.raises(ConfigError, match=f"scenarios revalidate {folder.name}"):
        gymnasium.make(ENV_ID, path=str(staged))

    env = {"SCENARIOS_CONFIG": str(tmp_path / "absent.toml"), "SCENARIOS_STORE__URL": store.url, "SCENARIOS_VALIDATION__SEEDS": "1"}
    done = CliRunner().invoke(app, ["revalidate", folder.name], env=env, catch_exceptions=False)

    assert done.exit_code == 0, done.output
    assert (staged / TASK_FILE).is_file()
    assert scenario_env(gymnasium.make(ENV_ID, path=str(staged))).scenario_id == folder.name


def test_the_public_api_is_sorted_and_resolves() -> None:
    import scenario_lib.envs as envs

    assert envs.__all__ == sorted(envs.__all__)
    for name in envs.__all__:
        member = getattr(envs, name)
        assert getattr(member, "__module__", "scenario_lib.envs").startswith("scenario_lib.envs"), name


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///data/store/benchmarks/v1", ("file:///data/store", "v1")),
        ("s3://bucket/prefix/benchmarks/v1/", ("s3://bucket/prefix", "v1")),
        ("/data/store/benchmarks/v1", ("/data/store", "v1")),
        ("s3://benchmarks/v1", None),
        ("file:///data/store/staging/v1", None),
        ("v1", None),
    ],
)
def test_a_benchmark_folder_url_names_its_store_and_destination(url: str, expected: tuple[str, str] | None) -> None:
    from scenario_lib.store.layout import benchmark_of_url

    assert benchmark_of_url(url) == expected
