"""The TASK stage and `is_success` on real MuJoCo models."""

from __future__ import annotations

import math
from collections.abc import Callable

import mujoco
import pytest
from build123d import Box as SolidBox

from conftest import BuiltScene
from scenario_lib.contract import (
    AllOf,
    Body,
    Box,
    Hinge,
    InsideZone,
    JointInRange,
    Pose,
    Scenario,
    Slide,
    Zone,
)
from scenario_lib.scene.mjcf import compile_mjcf
from scenario_lib.report import Stage, Verdict
from scenario_lib.scene.task import check_task, is_success

BuildScene = Callable[..., BuiltScene]


def lever_scenario(success: JointInRange | AllOf) -> Scenario:
    """A fixed post with a lever hinged on top (±90°) and a slider on a rail (0..50 mm)."""
    return Scenario(
        family="lever",
        objective="Turn the lever.",
        bodies=(
            Body(name="post", part=SolidBox(20, 20, 100), pose=Pose(position_mm=(0, 0, 50)),
                 primitives=(Box(half_size_mm=(10, 10, 50)),)),
            Body(name="lever", part=SolidBox(120, 10, 10), pose=Pose(position_mm=(50, 0, 105.05)),
                 motion=Hinge(axis=(0, 0, 1), anchor_mm=(-50, 0, 0), range_deg=(-90, 90)),
                 primitives=(Box(half_size_mm=(60, 5, 5)),)),
            Body(name="slider", part=SolidBox(10, 10, 10), pose=Pose(position_mm=(0, 100, 5)),
                 motion=Slide(axis=(1, 0, 0), range_mm=(0, 50)), primitives=(Box(half_size_mm=(5, 5, 5)),)),
        ),
        success=success,
    )


def test_dummy_box_task_passes(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    result = check_task(scene.scenario, compile_mjcf(scene.xml_path))  # type: ignore[arg-type]
    assert result.passed, result.message
    assert result.stage is Stage.TASK
    # The cube's origin is at x=0 and the zone starts at x = 120 - 30 mm.
    assert result.metrics["goal_distance_t0"] == pytest.approx(90.0, abs=1e-6)
    print(f"task stage: {result.duration_s * 1000:.2f} ms")


def test_already_solved_fails(build_scene: BuildScene) -> None:
    scene = build_scene("broken_already_solved")
    result = check_task(scene.scenario, compile_mjcf(scene.xml_path))  # type: ignore[arg-type]
    assert result.verdict is Verdict.FAIL
    assert result.metrics["goal_distance_t0"] == 0.0
    assert "already holds at t=0" in result.message


def test_joint_in_range_on_fixed_body_fails(build_scene: BuildScene) -> None:
    scene = build_scene("broken_joint_on_fixed")
    result = check_task(scene.scenario, compile_mjcf(scene.xml_path))  # type: ignore[arg-type]
    assert result.verdict is Verdict.FAIL
    assert "JointInRange refers to body 'base', whose motion is fixed" in result.message
    assert "Hinge or Slide" in result.message


@pytest.mark.parametrize(
    ("success", "expected"),
    [
        (InsideZone(body="ghost", zone=Zone(name="z", center_mm=(100, 0, 20), half_extents_mm=(10, 10, 10))),
         "refers to body 'ghost', which does not exist"),
        (InsideZone(body="floor", zone=Zone(name="z", center_mm=(100, 0, 20), half_extents_mm=(10, 10, 10))),
         "fixed body 'floor'"),
        (InsideZone(body="cube", zone=Zone(name="far", center_mm=(5000, 0, 20), half_extents_mm=(10, 10, 10))),
         "zone 'far' (centre (5000.0, 0.0, 20.0) mm) lies outside the scene"),
    ],
    ids=["missing-body", "fixed-body", "unreachable-zone"],
)
def test_malformed_zone_conditions(build_scene: BuildScene, success: InsideZone, expected: str) -> None:
    scene = build_scene("dummy_box")
    scenario = scene.scenario.model_copy(update={"success": success})  # type: ignore[attr-defined]
    result = check_task(scenario, compile_mjcf(scene.xml_path))
    assert result.verdict is Verdict.FAIL
    assert expected in result.message


def test_is_success_follows_the_cube(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    model = compile_mjcf(scene.xml_path)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    assert not is_success(scene.scenario, model, data)  # type: ignore[arg-type]
    address = model.joint("cube/free").qposadr[0]
    data.qpos[address] = 0.12  # x of the zone centre, in metres
    mujoco.mj_forward(model, data)
    assert is_success(scene.scenario, model, data)  # type: ignore[arg-type]


def test_lever_joint_task(build_scene: BuildScene) -> None:
    target = JointInRange(body="lever", low=30, high=60)
    scene = build_scene(lever_scenario(AllOf(conditions=(target, JointInRange(body="slider", low=20, high=30)))))
    model = compile_mjcf(scene.xml_path)
    result = check_task(scene.scenario, model)  # type: ignore[arg-type]
    assert result.passed, result.message
    # The furthest condition decides: the lever is 30° away, the slider 20 mm.
    assert result.metrics["goal_distance_t0"] == pytest.approx(30.0)
    data = mujoco.MjData(model)
    data.qpos[model.joint("lever/hinge").qposadr[0]] = math.radians(45)
    mujoco.mj_forward(model, data)
    assert not is_success(scene.scenario, model, data)  # type: ignore[arg-type]
    data.qpos[model.joint("slider/slide").qposadr[0]] = 0.025
    mujoco.mj_forward(model, data)
    assert is_success(scene.scenario, model, data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (JointInRange(body="lever", low=120, high=150), "lies outside the joint's range [-90, 90] deg"),
        (JointInRange(body="slider", low=-30, high=-10), "lies outside the joint's range [0, 50] mm"),
        (JointInRange(body="lever", low=-10, high=10), "already holds at t=0"),
    ],
    ids=["hinge-out-of-range", "slide-out-of-range", "hinge-already-in-range"],
)
def test_lever_joint_task_failures(build_scene: BuildScene, target: JointInRange, expected: str) -> None:
    scene = build_scene(lever_scenario(target))
    result = check_task(scene.scenario, compile_mjcf(scene.xml_path))  # type: ignore[arg-type]
    assert result.verdict is Verdict.FAIL
    assert expected in result.message
