"""Solvability: a physical demonstration takes the scene from its initial state to success.

The stage runs after task. The generic oracle solves every success condition from the scene alone,
acting only through the bounded `scenario_lib.scene.actuation.Hand`:

* `InsideZone` on a free body: grasp it, lift it clear of everything else, carry it above the zone
  while turning it to the first orientation that fits there (the body's start orientation, then the
  23 other axis-aligned turns of it, smallest turn first; "fits" is checked kinematically along the
  way down), descend into the zone, release, and let it settle: it must stay in the zone;
* `JointInRange`: hold the jointed body and drive its joint to the middle of the target range; the
  condition is checked at the end of the demonstration **while still driven** (a door held open, a
  lever held at its stop: a released joint may fall back, which is the scene's physics, not the task);
* `AllOf`: its conditions in order, each from the state the last one left.

A body that cannot follow its target within the hand's bounds is blocked: the stage fails naming the
body, where it stuck, the target, and what it touches. The demonstration (actions at the control rate
and the state after each) is data: `Demonstration` round-trips through JSON, and `replay` reproduces
it bit for bit. The negative control (the passive rollout must not reach success, nor end within
`NEGATIVE_MARGIN` of it) is checked here too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.scene.actuation import (
    CONTROL_PERIOD_S,
    Hand,
    HandAction,
    HandLimits,
    JointKind,
    rotation_vector_from_quat,
)
from scenario_lib.contract import (
    AllOf,
    InsideZone,
    JointInRange,
    Scenario,
    ScriptDemonstration,
    SuccessCondition,
)
from scenario_lib.report import Metric, Stage, StageResult
from scenario_lib.scene.demonstration import Demonstration
from scenario_lib.scene.placement import AXIS_TURNS, clearance_mm, obstacle_top_z, overlap_at, reach_m
from scenario_lib.scene.limits import DEEP_STEPS_BLOCKED, MAX_PENETRATION_MM, NEGATIVE_MARGIN
from scenario_lib.scene.task import goal_distance, is_success

GENERIC_ORACLE = "generic_oracle"
SCRIPT_DEMONSTRATION = "script"
LIFT_CLEARANCE_M = 0.01  # how far above everything else a carried body passes
FIT_PENETRATION_M = 0.0002  # a pose "fits" when the body overlaps nothing by more than this
DEEP_ENOUGH_M = 0.001  # a fitting turn that gets within this of the zone's centre height goes deep
POSITION_TOLERANCE_M = 0.001
ANGLE_TOLERANCE_RAD = math.radians(2.0)
DESCENT_SPEED_M_S = 0.15
SETTLE_S = 0.3
HOLD_S = 0.1
MAX_ORIENTATION_TRIES = 3
STALL_WINDOW_S = 1.0  # a joint driven at its bound that moves less than 2 % of the way left in this long is stalled
MAX_DRIVE_S = 10.0


@dataclass
class _Blocked(Exception):
    """The demonstration could not go on: why, for the stage's message."""

    message: str


@dataclass
class _Run:
    """A demonstration in progress: the hand, the record, and the figures the report carries."""

    scenario: Scenario
    model: mujoco.MjModel
    data: mujoco.MjData
    hand: Hand
    actions: list[tuple[float, ...]] = field(default_factory=list)
    states: list[tuple[float, ...]] = field(default_factory=list)
    path_length_m: float = 0.0
    peak_contact_force_n: float = 0.0
    max_penetration_mm: float = 0.0
    tightest_clearance_mm: float = math.inf
    success_at_s: float | None = None
    deep_steps: int = 0

    def act(self, action: HandAction) -> None:
        body_id = self.hand.bodies[action.body].body_id
        before = self.data.xpos[body_id].copy()
        self.hand.act(action)
        self.actions.append(tuple(float(v) for v in action.to_vector()))
        self.states.append(tuple(float(v) for v in self.data.qpos))
        self.path_length_m += float(np.linalg.norm(self.data.xpos[body_id] - before))
        self._measure_contacts(body_id, held=action.grasp)
        if self.success_at_s is None and is_success(self.scenario, self.model, self.data):
            self.success_at_s = len(self.actions) * CONTROL_PERIOD_S

    @property
    def time_s(self) -> float:
        return len(self.actions) * CONTROL_PERIOD_S

    def _measure_contacts(self, body_id: int, *, held: bool) -> None:
        force = np.zeros(6)
        deepest_now = 0.0
        for index in range(self.data.ncon):
            contact = self.data.contact[index]
            bodies = (self.model.geom_bodyid[contact.geom1], self.model.geom_bodyid[contact.geom2])
            if body_id not in bodies or contact.exclude != 0:
                continue
            mujoco.mj_contactForce(self.model, self.data, index, force)
            self.peak_contact_force_n = max(self.peak_contact_force_n, float(abs(force[0])))
            other = bodies[1] if bodies[0] == body_id else bodies[0]
            # Pushed through geometry means into the fixed scene; a load riding on a tipped lever is a
            # passenger (and cylinder-on-box contacts report deep transient overlaps as it rolls).
            if self.model.body_weldid[other] == 0:
                deepest_now = max(deepest_now, -float(contact.dist) * 1000)
        self.max_penetration_mm = max(self.max_penetration_mm, deepest_now)
        # A contact can be deep for a step at an impact; pushed through geometry, it stays deep.
        self.deep_steps = self.deep_steps + 1 if (held and deepest_now > MAX_PENETRATION_MM) else 0
        if self.deep_steps >= DEEP_STEPS_BLOCKED:
            name = self.hand.bodies[[b.body_id for b in self.hand.bodies].index(body_id)].name
            raise _Blocked(
                f"the hand pushed {name!r} {self.max_penetration_mm:.2g} mm into {self._touching(body_id) or 'another body'} "
                f"(limit {MAX_PENETRATION_MM:g} mm): the way is blocked; make room for the part to pass"
            )

    def _touching(self, body_id: int) -> str:
        names = set()
        for index in range(self.data.ncon):
            contact = self.data.contact[index]
            pair = (int(self.model.geom_bodyid[contact.geom1]), int(self.model.geom_bodyid[contact.geom2]))
            if body_id in pair:
                other = pair[1] if pair[0] == body_id else pair[0]
                names.add(mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, other) or "the world")
        return ", ".join(repr(name) for name in sorted(names))




# ---------------------------------------------------------------------------------------------------
# The generic oracle


def _move_to(run: _Run, index: int, position: npt.NDArray[np.float64], quat: npt.NDArray[np.float64], *, what: str, speed_m_s: float | None = None) -> None:
    """Command the held body to (position, quat) and wait until it is there; `_Blocked` if it cannot get there."""
    body = run.hand.bodies[index]
    start = run.data.xpos[body.body_id].copy()
    distance = float(np.linalg.norm(position - start))
    speed = speed_m_s or run.hand.limits.max_speed_m_s
    travel_steps = max(1, math.ceil(distance / (speed * CONTROL_PERIOD_S)))
    rotation = tuple(float(v) for v in rotation_vector_from_quat(quat))
    deadline = travel_steps + round(1.0 / CONTROL_PERIOD_S)
    for step in range(1, deadline + 1):
        fraction = min(1.0, step / travel_steps) if speed_m_s else 1.0
        target = start + (position - start) * fraction
        run.act(HandAction(index, True, (float(target[0]), float(target[1]), float(target[2])), rotation))  # type: ignore[arg-type]
        error = float(np.linalg.norm(run.data.xpos[body.body_id] - position))
        turn = _angle(run.data.xquat[body.body_id], quat)
        if step >= travel_steps and error < POSITION_TOLERANCE_M and turn < ANGLE_TOLERANCE_RAD:
            return
    raise _Blocked(
        f"{body.name!r} is blocked while {what}: it stopped at {_point_mm(run.data.xpos[body.body_id])}, "
        f"{error * 1000:.1f} mm and {math.degrees(turn):.0f}° from its target {_point_mm(position)}, touching "
        f"{run._touching(body.body_id) or 'nothing'}, with the hand's force bounded at {run.hand.limits.max_force_n:.3g} N"
    )


def _point_mm(point_m: npt.ArrayLike) -> str:
    x, y, z = (float(v) * 1000 for v in np.asarray(point_m))
    return f"({x:.1f}, {y:.1f}, {z:.1f}) mm"


def _angle(first: npt.NDArray[np.float64], second: npt.NDArray[np.float64]) -> float:
    dot = abs(float(np.dot(first, second)))
    return 2 * math.acos(min(1.0, dot))


def _fitting_orientations(run: _Run, condition: InsideZone, body_id: int, free_qpos: int, lift_z: float) -> tuple[list[npt.NDArray[np.float64]], str]:
    """Orientations in which the body can be lowered into the zone, deepest-reaching first, and why none can.

    For each of the 24 axis-aligned turns of the start orientation (smallest first), the body is lowered
    (kinematically) above the zone's centre from the carry height towards the zone's floor; it fits when
    it gets below the zone's top before it first overlaps anything. Turns that reach the zone's middle
    come first: a peg upright in its bore, not lying across the opening.
    """
    model = run.model
    scratch = mujoco.MjData(model)
    scratch.qpos[:] = run.data.qpos
    start = run.data.xquat[body_id].copy()
    center = np.asarray(condition.zone.center_mm) / 1000
    half_z = condition.zone.half_extents_mm[2] / 1000
    top, floor = center[2] + half_z, center[2] - half_z
    candidates: list[tuple[float, int, npt.NDArray[np.float64]]] = []
    best = (math.inf, "", np.zeros(3))
    for order, turn in enumerate(AXIS_TURNS):
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, turn, start)
        reach, blocker = _lowest_free_z(model, scratch, free_qpos, body_id, center, quat, lift_z, floor)
        if reach <= top:
            # Reaching the zone's middle beats only entering its top (a peg upright in its bore, not lying
            # across the opening); among those, the smallest turn (a block stays the way it stood).
            deep = reach <= center[2] + DEEP_ENOUGH_M
            candidates.append((0.0 if deep else 1.0, order, quat))
            if deep:
                break  # turns come smallest first: the first that goes deep is the one to use
        elif blocker[0] < best[0]:
            best = blocker
    candidates.sort(key=lambda item: (item[0], item[1]))
    reason = ""
    if not candidates:
        depth, other, where = best
        reason = (
            f"no orientation of {condition.body!r} fits into zone {condition.zone.name!r}: in the best of the 24 "
            f"axis-aligned turns it overlaps {other!r} by {depth * 1000:.2g} mm at {_point_mm(where)}, above the zone; widen the opening, shrink the part, "
            "or move the zone where the part can go"
        )
    return [quat for _, _, quat in candidates], reason


def _lowest_free_z(
    model: mujoco.MjModel,
    scratch: mujoco.MjData,
    free_qpos: int,
    body_id: int,
    center: npt.NDArray[np.float64],
    quat: npt.NDArray[np.float64],
    high: float,
    low: float,
) -> tuple[float, tuple[float, str, npt.NDArray[np.float64]]]:
    """How low the body gets, lowered from ``high`` towards ``low``, before it overlaps something; and the
    overlap that stopped it (depth, with what, where), sampled every 2 mm and refined to 0.1 mm."""
    def overlap(z: float) -> tuple[float, str]:
        return overlap_at(model, scratch, free_qpos, body_id, np.array([center[0], center[1], z]), quat)

    previous = high
    samples = max(2, math.ceil((high - low) / 0.002) + 1)
    for z in np.linspace(high, low, samples):
        depth, other = overlap(float(z))
        if depth > FIT_PENETRATION_M:
            clear, blocked = previous, float(z)
            for _ in range(5):
                middle = (clear + blocked) / 2
                if overlap(middle)[0] > FIT_PENETRATION_M:
                    blocked = middle
                else:
                    clear = middle
            return clear, (depth, other, np.array([center[0], center[1], float(z)]))
        previous = float(z)
    return low, (0.0, "", np.zeros(3))


def _solve_inside_zone(run: _Run, condition: InsideZone, orientation_choice: int) -> int:
    """Pick and place; returns how many fitting orientations there were (to try the next on failure)."""
    model, data = run.model, run.data
    index = run.hand.index_of(condition.body)
    body = run.hand.bodies[index]
    if body.kind is not JointKind.FREE:
        raise _Blocked(f"InsideZone names {condition.body!r}, which is on a {body.kind.value} joint; the oracle carries free bodies")
    reach = reach_m(model, data, body.body_id)
    lift_z = max(obstacle_top_z(model, data, body.body_id) + reach + LIFT_CLEARANCE_M, float(data.xpos[body.body_id][2]) + LIFT_CLEARANCE_M)
    fitting, reason = _fitting_orientations(run, condition, body.body_id, body.qpos, lift_z)
    if not fitting:
        raise _Blocked(reason)
    quat = fitting[min(orientation_choice, len(fitting) - 1)]
    start_quat = data.xquat[body.body_id].copy()
    here = data.xpos[body.body_id].copy()
    center = np.asarray(condition.zone.center_mm) / 1000
    _move_to(run, index, np.array([here[0], here[1], lift_z]), start_quat, what="being lifted clear")
    _move_to(run, index, np.array([center[0], center[1], lift_z]), quat, what="being carried above the zone")
    # Down to the zone's floor: the body comes to rest on whatever supports it in the zone (a hole's
    # bottom, the block below), and is released there rather than dropped.
    floor = np.array([center[0], center[1], center[2] - condition.zone.half_extents_mm[2] / 1000])
    _descend(run, index, condition, floor, quat)
    run.tightest_clearance_mm = min(run.tightest_clearance_mm, clearance_mm(model, data, body.body_id))
    release = HandAction(index, False)
    for _ in range(round(SETTLE_S / CONTROL_PERIOD_S)):
        run.act(release)
    distance = goal_distance(condition, model, data)
    if distance > 0:
        raise _Blocked(
            f"{condition.body!r} did not stay in zone {condition.zone.name!r} after release: it settled at "
            f"{_point_mm(data.xpos[body.body_id])}, {distance:.1f} mm outside, touching {run._touching(body.body_id) or 'nothing'}"
        )
    return len(fitting)


def _descend(run: _Run, index: int, condition: InsideZone, target: npt.NDArray[np.float64], quat: npt.NDArray[np.float64]) -> None:
    """Lower the body into the zone; done at the target, or resting on something inside the zone."""
    body = run.hand.bodies[index]
    start = run.data.xpos[body.body_id].copy()
    steps = max(1, math.ceil(float(np.linalg.norm(target - start)) / (DESCENT_SPEED_M_S * CONTROL_PERIOD_S)))
    rotation = tuple(float(v) for v in rotation_vector_from_quat(quat))
    resting = 0
    for step in range(1, steps + round(1.0 / CONTROL_PERIOD_S) + 1):
        point = start + (target - start) * min(1.0, step / steps)
        run.act(HandAction(index, True, (float(point[0]), float(point[1]), float(point[2])), rotation))  # type: ignore[arg-type]
        position = run.data.xpos[body.body_id]
        if step >= steps and float(np.linalg.norm(position - target)) < POSITION_TOLERANCE_M:
            return
        inside = goal_distance(condition, run.model, run.data) <= 0
        slow = float(np.linalg.norm(run.data.cvel[body.body_id][3:])) < 0.005
        # Inside the zone and stopped: resting on what supports it there (the hand presses no further).
        resting = resting + 1 if (inside and slow) else 0
        if resting >= 3:
            return
    raise _Blocked(
        f"{condition.body!r} is blocked on its way down into zone {condition.zone.name!r}: it stopped at "
        f"{_point_mm(run.data.xpos[body.body_id])}, {goal_distance(condition, run.model, run.data):.1f} mm from the zone, "
        f"touching {run._touching(body.body_id) or 'nothing'}: the opening is too small or in the wrong place for the part"
    )


def _solve_joint(run: _Run, condition: JointInRange) -> None:
    index = run.hand.index_of(condition.body)
    body = run.hand.bodies[index]
    if body.kind is JointKind.FREE:
        raise _Blocked(f"JointInRange names {condition.body!r}, a free body; the oracle drives hinges and slides")
    unit = math.radians if body.kind is JointKind.HINGE else (lambda value: value / 1000)
    target = float(run.model.qpos0[body.qpos]) + unit((condition.low + condition.high) / 2)
    _drive_joint(run, index, target, condition)
    distance = goal_distance(condition, run.model, run.data)
    if distance > 0:
        unit_name = "°" if body.kind is JointKind.HINGE else " mm"
        value = float(run.data.qpos[body.qpos] - run.model.qpos0[body.qpos])
        value = math.degrees(value) if body.kind is JointKind.HINGE else value * 1000
        raise _Blocked(
            f"{condition.body!r} is blocked: its joint stalled at {value:.1f}{unit_name} while driven to "
            f"{(condition.low + condition.high) / 2:.1f}{unit_name} ({distance:.2g}{unit_name} outside [{condition.low:g}, "
            f"{condition.high:g}]), touching {run._touching(body.body_id) or 'nothing'}, with the torque bounded at "
            f"{run.hand.limits.max_torque_n_m:.3g} N·m: clear its path or widen the joint range"
        )


def _drive_joint(run: _Run, index: int, target: float, condition: JointInRange | None = None) -> None:
    """Drive the held joint to ``target`` (qpos) until it is there and still, or stalled; then hold."""
    body = run.hand.bodies[index]
    speed = run.hand.limits.max_joint_speed_rad_s if body.kind is JointKind.HINGE else run.hand.limits.max_joint_speed_m_s
    bound = run.hand.limits.max_torque_n_m if body.kind is JointKind.HINGE else run.hand.limits.max_force_n
    travel = math.ceil(abs(target - float(run.data.qpos[body.qpos])) / (speed * CONTROL_PERIOD_S))
    action = HandAction(index, True, joint=target)
    # Drive until the joint is there and still; a damped joint may move slower than the hand's speed
    # limit under the bounded effort, so it is blocked only when it stops making progress.
    window = round(STALL_WINDOW_S / CONTROL_PERIOD_S)
    history: list[float] = []
    for step in range(round(MAX_DRIVE_S / CONTROL_PERIOD_S)):
        run.act(action)
        value = float(run.data.qpos[body.qpos])
        history.append(value)
        there = goal_distance(condition, run.model, run.data) <= 0 if condition else abs(target - value) < 1e-3
        if there and abs(float(run.data.qvel[body.dof])) < 0.05:
            break
        # Blocked: pushing at the hand's bound and not getting anywhere.
        saturated = abs(float(run.data.qfrc_applied[body.dof])) >= 0.95 * bound
        if step > travel + window and saturated and abs(history[-1] - history[-window]) < abs(target - value) * 0.02:
            break
    for _ in range(round(HOLD_S / CONTROL_PERIOD_S)):
        run.act(action)


def _run_script_demonstration(run: _Run, demonstration: ScriptDemonstration) -> None:
    """Follow the script's own steps with the same bounded hand."""
    for number, step in enumerate(demonstration.steps, start=1):
        try:
            index = run.hand.index_of(step.body)
        except KeyError as err:
            raise _Blocked(f"the script's demonstration step {number} names {step.body!r}: {err.args[0]}") from None
        body = run.hand.bodies[index]
        if not step.grasp:
            for _ in range(max(1, round(step.hold_s / CONTROL_PERIOD_S))):
                run.act(HandAction(index, False))
            continue
        if body.kind is JointKind.FREE:
            position = np.asarray(step.position_mm) / 1000 if step.position_mm else run.data.xpos[body.body_id].copy()
            quat = run.data.xquat[body.body_id].copy()
            if step.euler_deg is not None:
                mujoco.mju_euler2Quat(quat, np.radians(step.euler_deg), "XYZ")
            _move_to(run, index, position, quat, what=f"following the script's demonstration step {number}")
            action = HandAction(index, True, tuple(float(v) for v in position), tuple(float(v) for v in rotation_vector_from_quat(quat)))  # type: ignore[arg-type]
        else:
            offset = math.radians(step.joint or 0.0) if body.kind is JointKind.HINGE else (step.joint or 0.0) / 1000
            target = float(run.model.qpos0[body.qpos]) + offset
            _drive_joint(run, index, target)
            action = HandAction(index, True, joint=target)
        for _ in range(round(step.hold_s / CONTROL_PERIOD_S)):
            run.act(action)


def _solve(run: _Run, condition: SuccessCondition, orientation_choice: int) -> int:
    if isinstance(condition, AllOf):
        fits = 1
        for inner in condition.conditions:
            fits = max(fits, _solve(run, inner, orientation_choice))
        return fits
    if isinstance(condition, JointInRange):
        _solve_joint(run, condition)
        return 1
    return _solve_inside_zone(run, condition, orientation_choice)


def demonstrate(
    scenario: Scenario, model: mujoco.MjModel, limits: HandLimits | None = None, *, script_demonstrations: bool = True
) -> tuple[Demonstration | None, dict[str, Metric], str]:
    """The generic oracle, then (if it fails and the script has one) the script's own demonstration:
    (the demonstration, its metrics, "") on success, else (None, what was measured, why it failed)."""
    demonstration, metrics, message = _generic_oracle(scenario, model, limits)
    if demonstration is not None or scenario.demonstration is None or not script_demonstrations:
        return demonstration, metrics, message
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    run = _Run(scenario, model, data, Hand(model, data, limits))
    try:
        _run_script_demonstration(run, scenario.demonstration)
    except _Blocked as blocked:
        return None, _metrics(run, 1, SCRIPT_DEMONSTRATION), f"{message}; the script's demonstration failed too: {blocked.message}"
    if not is_success(scenario, model, data):
        distance = goal_distance(scenario.success, model, data)
        return None, _metrics(run, 1, SCRIPT_DEMONSTRATION), f"{message}; the script's demonstration ended {distance:.2g} from success"
    return _record(run, SCRIPT_DEMONSTRATION), _metrics(run, 1, SCRIPT_DEMONSTRATION), ""


def _record(run: _Run, source: str) -> Demonstration:
    return Demonstration(
        source=source,
        control_period_s=CONTROL_PERIOD_S,
        bodies=tuple(body.name for body in run.hand.bodies),
        actions=tuple(run.actions),
        qpos=tuple(run.states),
    )


def _generic_oracle(scenario: Scenario, model: mujoco.MjModel, limits: HandLimits | None) -> tuple[Demonstration | None, dict[str, Metric], str]:
    message = ""
    tries = 0
    fits = 1
    run: _Run | None = None
    while tries < min(fits, MAX_ORIENTATION_TRIES):
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        run = _Run(scenario, model, data, Hand(model, data, limits))
        tries += 1
        try:
            fits = _solve(run, scenario.success, tries - 1)
        except _Blocked as blocked:
            # The first try is the most telling (the best orientation); later ones are mentioned.
            message = blocked.message if not message else f"{message} (and {tries} orientation(s) tried)"
            if "no orientation" in message:
                break
            continue
        if is_success(scenario, model, data):
            return _record(run, GENERIC_ORACLE), _metrics(run, tries, GENERIC_ORACLE), ""
        message = f"the demonstration ended without success ({goal_distance(scenario.success, model, data):.2f} from the goal)"
    return None, _metrics(run, tries, GENERIC_ORACLE) if run else {}, message


def _metrics(run: _Run, tries: int, source: str) -> dict[str, Metric]:
    return {
        "demonstration": source,
        "tries": tries,
        "steps": len(run.actions),
        "demonstration_s": round(run.time_s, 3),
        "time_to_success_s": round(run.success_at_s, 3) if run.success_at_s is not None else -1.0,
        "path_length_mm": round(run.path_length_m * 1000, 2),
        "peak_contact_force_n": round(run.peak_contact_force_n, 3),
        "max_penetration_mm": round(run.max_penetration_mm, 4),  # into the fixed scene, while held or not
        # The side gap to the fixed scene where a carried body was placed (-1: none within 10 mm, or a joint).
        "tightest_clearance_mm": round(run.tightest_clearance_mm, 3) if math.isfinite(run.tightest_clearance_mm) else -1.0,
    }


def negative_control(scenario: Scenario, model: mujoco.MjModel, passive_qpos: npt.NDArray[np.float64]) -> str:
    """"" when the passive end state is clearly unsolved, else why it is not a task."""
    data = mujoco.MjData(model)
    data.qpos[:] = passive_qpos
    mujoco.mj_kinematics(model, data)
    distance = goal_distance(scenario.success, model, data)
    if distance <= 0:
        return "left alone, the scene reaches success by itself (the passive rollout ends solved): it is not a task"
    if distance < NEGATIVE_MARGIN:
        return (
            f"left alone, the scene ends {distance:.2g} from success (margin {NEGATIVE_MARGIN:g} mm or degrees): "
            "start the body clearly outside the zone (or the joint outside the range)"
        )
    return ""


def check_solvability(
    scenario: Scenario,
    model: mujoco.MjModel,
    passive_qpos: npt.NDArray[np.float64] | None = None,
    *,
    script_demonstrations: bool = True,
) -> tuple[StageResult, Demonstration | None]:
    """The SOLVABILITY stage: the negative control, then a demonstration (the generic oracle's, else the
    script's own when it has one and ``script_demonstrations``); the metrics record which succeeded."""
    started = time.perf_counter()
    if passive_qpos is not None:
        problem = negative_control(scenario, model, passive_qpos)
        if problem:
            return StageResult.failing(Stage.SOLVABILITY, problem, duration_s=time.perf_counter() - started), None
    demonstration, metrics, message = demonstrate(scenario, model, script_demonstrations=script_demonstrations)
    duration = time.perf_counter() - started
    metrics = {**metrics, "wall_s": round(duration, 4)}
    if demonstration is None:
        return StageResult.failing(Stage.SOLVABILITY, f"no demonstration reached success: {message}", metrics, duration), None
    return StageResult.passing(Stage.SOLVABILITY, metrics, duration), demonstration


__all__ = [
    "check_solvability",
    "demonstrate",
    "negative_control",
]
