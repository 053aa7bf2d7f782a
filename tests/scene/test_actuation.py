"""`scenario_lib.scene.actuation`: the abstract hand replays the stored demonstrations of every family exactly,
and its compiled controller is bit for bit the numpy formulation it replaced (real MuJoCo scenes, random actions)."""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
import pytest

from scenario_lib.envs import ScenarioEnv
from scenario_lib.scene.actuation import (
    PD_UPDATES_PER_ACTION,
    Hand,
    HandAction,
    HandLimits,
    JointKind,
    MovableBody,
    movable_bodies,
    quat_from_rotation_vector,
    rotation_vector_from_quat,
)
from scenario_lib.scene._hand import set_order
from scenario_lib.scene.demonstration import replay
from tests.benchmark_fixtures import FAMILIES, PromotedBenchmark, promoted_benchmark  # noqa: F401

Vector = np.ndarray[Any, np.dtype[np.float64]]

# A free box on the floor, a lever on a hinge with a free load on it, a lift on a vertical slide with a crate on
# it: every path of the controller (free wrench, joint servo, riders on a hinge and on a slide, release).
SCENE_XML = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body name="box" pos="0.3 0 0.05" euler="0 0 0.4"><freejoint/><geom type="box" size="0.03 0.02 0.05" mass="0.2"/></body>
    <body name="lever" pos="-0.2 0 0.1">
      <joint type="hinge" axis="0 1 0" range="-0.5 0.5"/><geom type="box" size="0.15 0.03 0.01" mass="0.3"/>
    </body>
    <body name="load" pos="-0.25 0 0.135"><freejoint/><geom type="box" size="0.02 0.02 0.02" mass="0.1"/></body>
    <body name="platform" pos="0 0.3 0.05">
      <joint type="slide" axis="0 0 1" range="-0.03 0.2"/><geom type="box" size="0.05 0.05 0.01" mass="0.2"/>
    </body>
    <body name="crate" pos="0.01 0.3 0.085"><freejoint/><geom type="box" size="0.02 0.02 0.02" mass="0.1"/></body>
  </worldbody>
</mujoco>
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_replay_reproduces_the_stored_demonstration_exactly(promoted_benchmark: PromotedBenchmark, family: str) -> None:
    env = ScenarioEnv(**promoted_benchmark.env_kwargs(family))
    demonstration = env.demonstration
    data = mujoco.MjData(env.model)
    mujoco.mj_forward(env.model, data)
    hand = Hand(env.model, data)
    for number, (action, recorded) in enumerate(zip(demonstration.actions, demonstration.qpos)):
        hand.act(HandAction.from_vector(action))
        assert np.array_equal(data.qpos, np.array(recorded)), f"{family}: the state left the recording at step {number}"
    final = replay(env.model, demonstration)
    assert np.array_equal(final.qpos, np.array(demonstration.qpos[-1]))
    assert final.qpos.tobytes() == data.qpos.tobytes() and final.qvel.tobytes() == data.qvel.tobytes()
    env.close()


def test_movable_bodies_name_their_joint_kind() -> None:
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    bodies = movable_bodies(model)
    assert [(body.name, body.kind) for body in bodies] == [
        ("box", JointKind.FREE),
        ("lever", JointKind.HINGE),
        ("load", JointKind.FREE),
        ("platform", JointKind.SLIDE),
        ("crate", JointKind.FREE),
    ]
    # str-valued: the kinds still compare equal to the names they had as plain strings.
    assert [body.kind for body in bodies] == ["free", "hinge", "free", "slide", "free"]


def test_the_rotation_helpers_are_mujocos_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    quat, vector = np.zeros(4), np.zeros(3)
    for trial in range(20000):
        q = rng.normal(size=4)
        if trial % 3 == 1:  # near the identity (or its negation), where the fallbacks and the wrap-around act
            q = np.array([math.copysign(1.0, q[0]), 0.0, 0.0, 0.0]) + rng.normal(scale=10.0 ** rng.integers(-18, -2), size=4)
        mujoco.mju_quat2Vel(vector, q, 1.0)
        assert rotation_vector_from_quat(q).tobytes() == vector.tobytes(), q
        v = rng.normal(size=3) * 10.0 ** rng.integers(-13, 1)
        angle = float(np.linalg.norm(v))
        if angle < 1e-12:
            expected = np.array([1.0, 0.0, 0.0, 0.0])
        else:
            mujoco.mju_axisAngle2Quat(quat, v / angle, angle)
            expected = quat
        assert quat_from_rotation_vector(v).tobytes() == expected.tobytes(), v


def random_actions(hand: Hand, rng: np.random.Generator, count: int) -> list[HandAction]:
    """Stretches of 12 actions on one body: released sometimes, targets far and near, big rotations."""
    actions = []
    for number in range(count):
        if number % 12 == 0:
            index = int(rng.integers(len(hand.bodies)))
            grasp = bool(rng.random() > 0.2)
            position = rng.normal(0.0, 0.15, 3) + hand.data.xpos[hand.bodies[index].body_id]
            rotation = rng.normal(0.0, 2.0, 3)
            joint = float(rng.normal(0.0, 0.6))
        drift = rng.normal(0.0, 0.005, 3)
        actions.append(HandAction(index, grasp, tuple((position + drift).tolist()), tuple(rotation.tolist()), joint))  # type: ignore[arg-type]
    return actions


@pytest.mark.parametrize(
    ("seed", "bounded"), [(0, False), (1, False), (2, True), (3, True)], ids=["seed0", "seed1", "seed2-clamped", "seed3-clamped"]
)
def test_the_compiled_controller_is_the_numpy_formulation_bit_for_bit(seed: int, bounded: bool) -> None:
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    fast_data, reference_data = mujoco.MjData(model), mujoco.MjData(model)
    for data in (fast_data, reference_data):
        mujoco.mj_forward(model, data)
    # Tight bounds make the force and torque clamps act on most updates.
    limits = HandLimits(max_force_n=1.5, max_torque_n_m=0.01) if bounded else HandLimits.from_model(model)
    hand = Hand(model, fast_data, limits)
    reference = NumpyHand(model, reference_data, limits)
    for number, action in enumerate(random_actions(hand, np.random.default_rng(seed), 240)):
        hand.act(action)
        reference.act(action)
        for field in ("xfrc_applied", "qfrc_applied", "qpos", "qvel"):
            fast, expected = getattr(fast_data, field), getattr(reference_data, field)
            assert fast.tobytes() == expected.tobytes(), f"{field} differs after action {number} ({action})"


class NumpyHand:
    """The hand's controller as it was written on numpy arrays, before it moved to floats: the reference
    the stored demonstrations were recorded with."""

    OMEGA_RAD_S = 25.0
    JOINT_OMEGA_RAD_S = 15.0
    GRAVITY_M_S2 = 9.81

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, limits: HandLimits) -> None:
        self.model, self.data = model, data
        self.limits = limits
        self.bodies = movable_bodies(model)
        self.steps_per_action = max(1, round(0.02 / model.opt.timestep))
        self._held: int | None = None
        self._setpoint_pos = np.zeros(3)
        self._setpoint_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self._setpoint_joint = 0.0
        self._joint_integral = 0.0
        self._joint_inertia = 0.0
        self._payload_bias = 0.0

    def act(self, action: HandAction) -> None:
        body = self.bodies[action.body]
        if not action.grasp:
            self._release()
            mujoco.mj_step(self.model, self.data, nstep=self.steps_per_action)
            return
        if self._held != action.body:
            self._release()
            self._held = action.body
            self._setpoint_pos = self.data.xpos[body.body_id].copy()
            self._setpoint_quat = self.data.xquat[body.body_id].copy()
            self._setpoint_joint = float(self.data.qpos[body.qpos])
            self._joint_integral = 0.0
        if body.kind != "free":
            self._joint_inertia, self._payload_bias = self._payload(body)
        updates = PD_UPDATES_PER_ACTION
        substeps = max(1, self.steps_per_action // updates)
        dt = substeps * float(self.model.opt.timestep)
        for update in range(updates):
            self._advance_setpoint(body, action, dt)
            self._apply_wrench(body, dt)
            remaining = self.steps_per_action - substeps * (updates - 1) if update == updates - 1 else substeps
            mujoco.mj_step(self.model, self.data, nstep=remaining)

    def _payload(self, body: MovableBody) -> tuple[float, float]:
        model, data = self.model, self.data
        inertia = 1.0 / max(float(model.dof_invweight0[body.dof]), 1e-9)
        joint = int(model.body_jntadr[body.body_id])
        axis, anchor = data.xaxis[joint], data.xanchor[joint]
        riders: set[int] = set()
        for index in range(data.ncon):
            contact = data.contact[index]
            pair = (int(model.geom_bodyid[contact.geom1]), int(model.geom_bodyid[contact.geom2]))
            if body.body_id in pair:
                other = pair[1] if pair[0] == body.body_id else pair[0]
                if model.body_jntnum[other] == 1 and model.jnt_type[model.body_jntadr[other]] == mujoco.mjtJoint.mjJNT_FREE:
                    riders.add(other)
        weight_bias = 0.0
        gravity = np.array([0.0, 0.0, -self.GRAVITY_M_S2])
        for other in riders:
            mass = float(model.body_mass[other])
            if body.kind == "hinge":
                arm = np.cross(data.xipos[other] - anchor, axis)
                inertia += mass * float(arm @ arm)
                weight_bias -= float(np.cross(data.xipos[other] - anchor, mass * gravity) @ axis)
            else:
                inertia += mass
                weight_bias -= float(mass * gravity @ axis)
        return inertia, weight_bias

    def _release(self) -> None:
        if self._held is not None:
            body = self.bodies[self._held]
            self.data.xfrc_applied[body.body_id] = 0.0
            if body.kind != "free":
                self.data.qfrc_applied[body.dof] = 0.0
        self._held = None

    def _advance_setpoint(self, body: MovableBody, action: HandAction, dt: float) -> None:
        limits = self.limits
        if body.kind == "free":
            step = np.asarray(action.position_m) - self._setpoint_pos
            distance = float(np.linalg.norm(step))
            reach = limits.max_speed_m_s * dt
            self._setpoint_pos = self._setpoint_pos + (step if distance <= reach else step * (reach / distance))
            target = _numpy_quat_from_rotation_vector(np.asarray(action.rotation_vector))
            error = _numpy_quat_error(target, self._setpoint_quat)
            angle = float(np.linalg.norm(error))
            turn = limits.max_angular_speed_rad_s * dt
            if angle > 1e-12:
                partial = _numpy_quat_from_rotation_vector(error * min(1.0, turn / angle))
                mujoco.mju_mulQuat(self._setpoint_quat, partial, self._setpoint_quat.copy())
                mujoco.mju_normalize4(self._setpoint_quat)
            return
        speed = limits.max_joint_speed_rad_s if body.kind == "hinge" else limits.max_joint_speed_m_s
        joint_step = action.joint - self._setpoint_joint
        self._setpoint_joint += max(-speed * dt, min(speed * dt, joint_step))

    def _apply_wrench(self, body: MovableBody, dt: float) -> None:
        model, data, limits = self.model, self.data, self.limits
        omega = self.OMEGA_RAD_S
        if body.kind == "free":
            mass = float(model.body_subtreemass[body.body_id])
            velocity = np.zeros(6)
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, body.body_id, velocity, 0)
            angular, linear = velocity[:3], velocity[3:]
            force = mass * (omega**2 * (self._setpoint_pos - data.xpos[body.body_id]) - 2 * omega * linear)
            force[2] += mass * self.GRAVITY_M_S2
            frame = data.ximat[body.body_id].reshape(3, 3)
            inertia = frame @ np.diag(model.body_inertia[body.body_id]) @ frame.T
            error = _numpy_quat_error(self._setpoint_quat, data.xquat[body.body_id])
            torque = inertia @ (omega**2 * error - 2 * omega * angular)
            data.xfrc_applied[body.body_id, :3] = _numpy_clamp_norm(force, limits.max_force_n)
            data.xfrc_applied[body.body_id, 3:] = _numpy_clamp_norm(torque, limits.max_torque_n_m)
            return
        omega_joint = self.JOINT_OMEGA_RAD_S
        inertia_joint = self._joint_inertia
        joint_error = self._setpoint_joint - float(data.qpos[body.qpos])
        bound = limits.max_torque_n_m if body.kind == "hinge" else limits.max_force_n
        gain = inertia_joint * (omega_joint / 2) ** 3
        if joint_error * self._joint_integral < 0:
            self._joint_integral *= 0.5
        self._joint_integral = max(-bound, min(bound, self._joint_integral + gain * joint_error * dt))
        effort = (
            inertia_joint * (omega_joint**2 * joint_error - 3 * omega_joint * float(data.qvel[body.dof]))
            + self._joint_integral
            + float(data.qfrc_bias[body.dof])
            + self._payload_bias
        )
        data.qfrc_applied[body.dof] = max(-bound, min(bound, effort))


def _numpy_quat_from_rotation_vector(rotation: Vector) -> Vector:
    quat = np.zeros(4)
    angle = float(np.linalg.norm(rotation))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    mujoco.mju_axisAngle2Quat(quat, rotation / angle, angle)
    return quat


def _numpy_quat_error(target: Vector, current: Vector) -> Vector:
    difference, conjugate, vector = np.zeros(4), np.zeros(4), np.zeros(3)
    mujoco.mju_negQuat(conjugate, current)
    mujoco.mju_mulQuat(difference, target, conjugate)
    if difference[0] < 0:
        difference = -difference
    mujoco.mju_quat2Vel(vector, difference, 1.0)
    return vector


def _numpy_clamp_norm(vector: Vector, bound: float) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector if norm <= bound or norm == 0.0 else vector * (bound / norm)


def test_the_kernel_sums_riders_in_the_order_a_python_set_iterates_them() -> None:
    # The reference sums the free bodies resting on a joint in the iteration order of a set of their body ids.
    rng = np.random.default_rng(0)
    for _ in range(3000):
        keys = rng.integers(1, int(rng.choice([8, 40, 300])), size=int(rng.integers(1, 40))).tolist()
        assert set_order(keys) == list(set(keys)), keys


def test_a_recorded_episode_replays_on_bare_mujoco_calls() -> None:
    # What the step-cost benchmark relies on: the kernel's record of its mj_step calls reproduces the episode.
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    data, bare = mujoco.MjData(model), mujoco.MjData(model)
    for each in (data, bare):
        mujoco.mj_forward(model, each)
    hand = Hand(model, data)
    hand.kernel.record = recorded = []
    for action in random_actions(hand, np.random.default_rng(4), 60):
        hand.act(action)
    assert sum(nstep for nstep, _, _ in recorded) == 60 * hand.steps_per_action
    for nstep, xfrc, qfrc in recorded:
        bare.xfrc_applied[:] = np.frombuffer(xfrc).reshape(model.nbody, 6)
        bare.qfrc_applied[:] = np.frombuffer(qfrc)
        mujoco.mj_step(model, bare, nstep=nstep)
    assert bare.qpos.tobytes() == data.qpos.tobytes() and bare.qvel.tobytes() == data.qvel.tobytes()
