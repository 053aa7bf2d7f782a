"""The task: is the success condition well-formed, achievable in principle, and not already met at t=0?

Conditions are evaluated on a MuJoCo state: `InsideZone` on the body frame origin (world frame),
`JointInRange` on the joint displacement from the initial pose (degrees for hinges, mm for slides).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import mujoco
import numpy as np

from scenario_lib.contract import AllOf, Fixed, Hinge, InsideZone, JointInRange, Scenario, Slide, SuccessCondition
from scenario_lib.report import Metric, Stage, StageResult
from scenario_lib.scene.limits import ZONE_REACH_MARGIN



def is_success(scenario: Scenario, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
    """Whether the success condition of ``scenario`` holds in ``data`` (positions must be current)."""
    return goal_distance(scenario.success, model, data) <= 0.0


def check_task(scenario: Scenario, model: mujoco.MjModel) -> StageResult:
    """The TASK stage: condition well-formed against the scenario and model, and unmet at t=0."""
    started = time.perf_counter()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    problems = _check_condition(scenario.success, scenario, model, data)
    metrics: dict[str, Metric] = {}
    if not problems:
        distance = goal_distance(scenario.success, model, data)
        metrics["goal_distance_t0"] = round(distance, 6)
        if distance <= 0.0:
            problems.append(
                "the success condition already holds at t=0, so the task is solved without doing anything; "
                "start the body outside the zone (or the joint outside the range)"
            )
    duration = time.perf_counter() - started
    if problems:
        return StageResult.failing(Stage.TASK, "; ".join(problems), metrics, duration_s=duration)
    return StageResult.passing(Stage.TASK, metrics, duration_s=duration)


def _check_condition(
    condition: SuccessCondition, scenario: Scenario, model: mujoco.MjModel, data: mujoco.MjData
) -> list[str]:
    if isinstance(condition, AllOf):
        return [problem for inner in condition.conditions for problem in _check_condition(inner, scenario, model, data)]
    names = [body.name for body in scenario.bodies]
    if condition.body not in names:
        return [f"the success condition refers to body {condition.body!r}, which does not exist; bodies are {names}"]
    body = scenario.body(condition.body)
    body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, condition.body)
    if isinstance(condition, JointInRange):
        if not isinstance(body.motion, (Hinge, Slide)):
            return [
                f"JointInRange refers to body {condition.body!r}, whose motion is {body.motion.kind}; it needs a "
                "Hinge or Slide joint (or use InsideZone for a free body)"
            ]
        joint_range = body.motion.range_deg if isinstance(body.motion, Hinge) else body.motion.range_mm
        unit = "deg" if isinstance(body.motion, Hinge) else "mm"
        if joint_range is not None and (condition.high < joint_range[0] or condition.low > joint_range[1]):
            return [
                f"JointInRange [{condition.low:g}, {condition.high:g}] {unit} on {condition.body!r} lies outside "
                f"the joint's range [{joint_range[0]:g}, {joint_range[1]:g}] {unit}, so it can never hold; "
                "widen the joint range or move the target"
            ]
        return []
    assert isinstance(condition, InsideZone)
    problems: list[str] = []
    if isinstance(body.motion, Fixed) and model.body_weldid[body_id] == 0:
        problems.append(
            f"InsideZone asks fixed body {condition.body!r} to reach zone {condition.zone.name!r}, but it cannot "
            "move; name the movable body or give it motion=FREE"
        )
    low, high = _scene_bounds_m(model, data)
    margin = ZONE_REACH_MARGIN * float(np.max(high - low))
    center = np.asarray(condition.zone.center_mm) / 1000
    half = np.asarray(condition.zone.half_extents_mm) / 1000
    if np.any(center + half < low - margin) or np.any(center - half > high + margin):
        problems.append(
            f"zone {condition.zone.name!r} (centre {tuple(round(v, 1) for v in condition.zone.center_mm)} mm) lies "
            f"outside the scene (bounds {_mm(low)}..{_mm(high)} mm); place the zone where the body can get"
        )
    return problems


def goal_distance(condition: SuccessCondition, model: mujoco.MjModel, data: mujoco.MjData) -> float:
    """0 when the condition holds, else how far from it: mm for zones and slides, degrees for hinges."""
    return compile_goal_distance(condition, model)(data)


def compile_goal_distance(condition: SuccessCondition, model: mujoco.MjModel) -> Callable[[mujoco.MjData], float]:
    """`goal_distance` of ``condition`` as a function of a state of ``model``, with the condition's bodies
    and joints looked up once: for a caller that evaluates it every control step (the environment)."""
    if isinstance(condition, AllOf):
        parts = tuple(compile_goal_distance(inner, model) for inner in condition.conditions)
        return lambda data: max([part(data) for part in parts])
    body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, condition.body)
    if body_id < 0:
        return lambda data: math.inf
    if isinstance(condition, InsideZone):
        center_x, center_y, center_z = condition.zone.center_mm
        half_x, half_y, half_z = condition.zone.half_extents_mm

        def zone_distance(data: mujoco.MjData) -> float:
            x, y, z = data.xpos[body_id].tolist()
            outside_x = max(abs(x * 1000 - center_x) - half_x, 0.0)
            outside_y = max(abs(y * 1000 - center_y) - half_y, 0.0)
            outside_z = max(abs(z * 1000 - center_z) - half_z, 0.0)
            # The parentheses are numpy's: this equals np.linalg.norm of the three, bit for bit.
            return math.sqrt((outside_x * outside_x + outside_y * outside_y) + outside_z * outside_z)

        return zone_distance
    joint = _joint_of(model, body_id)
    if joint is None:
        return lambda data: math.inf
    address, start, to_unit = joint
    low, high = condition.low, condition.high

    def joint_distance(data: mujoco.MjData) -> float:
        value = to_unit(data.qpos.item(address) - start)
        return max(low - value, value - high, 0.0)

    return joint_distance


def _joint_of(model: mujoco.MjModel, body_id: int) -> tuple[int, float, Callable[[float], float]] | None:
    """The qpos address, initial value and unit conversion (to degrees or mm) of the body's single hinge or
    slide, or None when it has none."""
    if int(model.body_jntnum[body_id]) != 1:
        return None
    joint = int(model.body_jntadr[body_id])
    # qpos0 is the pose the scenario declared, so qpos - qpos0 is the displacement from it.
    address = int(model.jnt_qposadr[joint])
    start = float(model.qpos0[address])
    kind = int(model.jnt_type[joint])
    if kind == int(mujoco.mjtJoint.mjJNT_HINGE):
        return address, start, math.degrees
    if kind == int(mujoco.mjtJoint.mjJNT_SLIDE):
        return address, start, lambda value_m: value_m * 1000
    return None


def _scene_bounds_m(model: mujoco.MjModel, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounds of all geoms (bounding spheres) at the current state."""
    real = model.geom_rbound > 0
    if not real.any():
        return np.zeros(3), np.zeros(3)
    radius = model.geom_rbound[real][:, None]
    positions = data.geom_xpos[real]
    return (positions - radius).min(axis=0), (positions + radius).max(axis=0)


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v * 1000:.0f}" for v in values) + ")"
