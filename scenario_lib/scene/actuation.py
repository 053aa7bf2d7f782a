"""The abstract hand: bounded, physical actuation of a scene's movable bodies at a fixed control rate.

A demonstration (and, later, a policy in the Gymnasium environment) acts on a loaded scene only
through `Hand.act`: one `HandAction` per control period (`CONTROL_PERIOD_S`). An action names the
movable body the hand holds, whether it grasps it, and a target: the body origin's world position
and orientation for a free body, the joint value for a hinge or slide. The hand moves its set-point
toward the target no faster than `HandLimits` allows and pulls the body toward the set-point with a
PD wrench plus gravity compensation, clamped to the limits' force and torque (``xfrc_applied`` for a
free body, ``qfrc_applied`` for a joint). Nothing is ever teleported: a body blocked by geometry
stays blocked, pushing with at most the bounded force. Released (``grasp=False``), the body feels
nothing from the hand. The stored ``scene.xml`` is untouched: the hand is added when a scene is
loaded for a demonstration.

Actions travel as flat vectors (`HandAction.to_vector` / `from_vector`, `ACTION_SIZE` numbers):
``[body index, grasp, x, y, z, rx, ry, rz, joint]`` with the position in metres, the orientation as a
rotation vector (radians) and the joint value in radians or metres, so a stored demonstration is a
plain array.

The controller runs `PD_UPDATES_PER_ACTION` times per action on scenes whose ten MuJoCo steps cost a
few tens of microseconds, so it computes on Python floats rather than on 3-element numpy arrays. Every
value it hands to MuJoCo is bit-identical to the numpy formulation it replaced, so demonstrations
recorded before replay exactly: elementwise ``+ - * /`` and ``sqrt`` are correctly rounded in both; a
3-vector dot (and so a norm) is ``(x0*y0 + x1*y1) + x2*y2`` in numpy's BLAS as here, and a cross product
is numpy's ``a1*b2 - a2*b1`` per component; the quaternion helpers repeat the operation order of MuJoCo's
compiled ``mju_*`` routines (libmujoco has no fused multiply-adds). The inertia products stay numpy
matrix products: BLAS fuses their multiply-adds, which plain floats cannot repeat.
``tests/test_actuation.py`` checks all of it against the numpy formulation on random actions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import mujoco
import numpy as np
import numpy.typing as npt

CONTROL_PERIOD_S = 0.02  # 50 Hz: one action per 20 ms
PD_UPDATES_PER_ACTION = 4  # the wrench is recomputed every 5 ms within an action
ACTION_SIZE = 9
GRAVITY_M_S2 = 9.81
JOINT_OMEGA_RAD_S = 15.0  # the joint servo's natural frequency (damping ratio 1.5)

Vector = npt.NDArray[np.float64]
Quat = tuple[float, float, float, float]
Vec3 = tuple[float, float, float]

_BODY = int(mujoco.mjtObj.mjOBJ_BODY)
_MJ_MINVAL = 1e-15  # mjMINVAL: below it MuJoCo's normalizations fall back to a unit axis or quaternion
_IDENTITY: Quat = (1.0, 0.0, 0.0, 0.0)
_SMALL_ANGLE_RAD = 1e-12  # below it a rotation vector is the identity


class JointKind(str, Enum):
    """How a movable body moves: on a free joint (6 dof), a hinge or a slide."""

    FREE = "free"
    HINGE = "hinge"
    SLIDE = "slide"


@dataclass(frozen=True)
class HandLimits:
    """Bounds of the hand (SI units)."""

    max_force_n: float
    max_torque_n_m: float
    max_speed_m_s: float = 1.0
    max_angular_speed_rad_s: float = 6.0
    max_joint_speed_rad_s: float = 1.0
    max_joint_speed_m_s: float = 0.3

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> HandLimits:
        """Limits scaled to the scene: a force of four times the weight of everything movable, a torque of
        that force at the scene's extent."""
        moving = np.array([model.body_weldid[i] != 0 for i in range(model.nbody)])
        weight = float(model.body_mass[moving].sum()) * GRAVITY_M_S2
        force = max(0.05, 4.0 * weight)
        return cls(max_force_n=force, max_torque_n_m=force * max(float(model.stat.extent), 0.05))


@dataclass(frozen=True)
class HandAction:
    """What the hand does for one control period."""

    body: int  # index into Hand.bodies
    grasp: bool
    position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_vector: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world orientation as axis × angle (rad)
    joint: float = 0.0  # hinge (rad) or slide (m) value, absolute (qpos)

    def to_vector(self) -> Vector:
        return np.array([self.body, float(self.grasp), *self.position_m, *self.rotation_vector, self.joint])

    @classmethod
    def from_vector(cls, vector: npt.ArrayLike) -> HandAction:
        values = np.asarray(vector, dtype=float).reshape(-1)
        if values.shape != (ACTION_SIZE,) or not np.all(np.isfinite(values)):
            raise ValueError(f"a hand action is {ACTION_SIZE} finite numbers [body, grasp, x, y, z, rx, ry, rz, joint], got {values!r:.200}")
        return cls.from_floats(values.tolist())

    @classmethod
    def from_floats(cls, values: list[float]) -> HandAction:
        """The action of ``ACTION_SIZE`` finite Python floats (unchecked: `from_vector` checks)."""
        body, grasp, x, y, z, rx, ry, rz, joint = values
        return cls(int(round(body)), grasp > 0.5, (x, y, z), (rx, ry, rz), joint)


@dataclass(frozen=True)
class MovableBody:
    """A body the hand can hold: free (6 dof) or on one hinge or slide joint."""

    name: str
    body_id: int
    kind: JointKind
    dof: int  # first dof address
    qpos: int  # first qpos address


_JOINT_KINDS = {
    mujoco.mjtJoint.mjJNT_FREE: JointKind.FREE,
    mujoco.mjtJoint.mjJNT_HINGE: JointKind.HINGE,
    mujoco.mjtJoint.mjJNT_SLIDE: JointKind.SLIDE,
}


def movable_bodies(model: mujoco.MjModel) -> tuple[MovableBody, ...]:
    """The bodies of ``model`` with exactly one free, hinge or slide joint, in body order."""
    found = []
    for body in range(1, model.nbody):
        if model.body_jntnum[body] != 1:
            continue
        joint = int(model.body_jntadr[body])
        kind = _JOINT_KINDS.get(mujoco.mjtJoint(model.jnt_type[joint]))
        if kind is None:
            continue
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body) or f"body{body}"
        found.append(MovableBody(name, body, kind, int(model.jnt_dofadr[joint]), int(model.jnt_qposadr[joint])))
    return tuple(found)


def quat_from_rotation_vector(vector: npt.ArrayLike) -> Vector:
    x, y, z = np.asarray(vector, dtype=float).tolist()
    return np.array(_quat_of_rotation(x, y, z))


def rotation_vector_from_quat(quat: npt.ArrayLike) -> Vector:
    w, x, y, z = np.asarray(quat, dtype=float).tolist()
    return np.array(_rotation_of_quat(w, x, y, z))


# Quaternion arithmetic on floats, (w, x, y, z). The operation order is that of libmujoco's compiled
# mju_mulQuat, mju_quat2Vel, mju_axisAngle2Quat and mju_normalize4 (MuJoCo 4.0), so the results are
# theirs bit for bit (the hand called those before): keep the parentheses.


def _mul_quat(a: Quat, b: Quat) -> Quat:
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return (
        (a0 * b0 - a1 * b1) + (-a2 * b2 - a3 * b3),
        (a0 * b1 + a1 * b0) + (a2 * b3 - a3 * b2),
        (a0 * b2 - a1 * b3) + (a2 * b0 + a3 * b1),
        (a0 * b3 + a1 * b2) + (-a2 * b1 + a3 * b0),
    )


def _normalize_quat(q: Quat) -> Quat:
    q0, q1, q2, q3 = q
    norm = math.sqrt((q0 * q0 + q1 * q1) + (q2 * q2 + q3 * q3))
    if norm < _MJ_MINVAL:
        return _IDENTITY
    if abs(norm - 1.0) > _MJ_MINVAL:
        scale = 1.0 / norm
        return (q0 * scale, q1 * scale, q2 * scale, q3 * scale)
    return q


def _rotation_of_quat(w: float, x: float, y: float, z: float) -> Vec3:
    """The rotation vector of a unit quaternion (mju_quat2Vel with dt = 1)."""
    sin_half = math.sqrt((x * x + y * y) + z * z)
    angle = math.atan2(sin_half, w)
    angle = angle + angle
    if angle > math.pi:
        angle = angle + -2 * math.pi
    if sin_half < _MJ_MINVAL:
        return (angle, 0.0 * angle, 0.0 * angle)  # MuJoCo's fallback axis (1, 0, 0), zeros signed as MuJoCo's are
    scale = 1.0 / sin_half
    return (x * scale * angle, y * scale * angle, z * scale * angle)


def _quat_of_rotation(x: float, y: float, z: float) -> Quat:
    """The unit quaternion of a rotation vector (axis × angle, radians)."""
    angle = math.sqrt((x * x + y * y) + z * z)
    if angle < _SMALL_ANGLE_RAD:
        return _IDENTITY
    half = angle * 0.5
    sin_half = math.sin(half)
    return (math.cos(half), x / angle * sin_half, y / angle * sin_half, z / angle * sin_half)


def _quat_error(target: Quat, current: Sequence[float]) -> Vec3:
    """The rotation vector (world frame) that turns ``current`` into ``target``: the rotation of ``target``
    times the conjugate of ``current``, taken the short way (`_mul_quat` written out, with the same operations:
    the controller calls this twice per update)."""
    t0, t1, t2, t3 = target
    c0, c1, c2, c3 = current
    n1, n2, n3 = -c1, -c2, -c3
    w = (t0 * c0 - t1 * n1) + (-t2 * n2 - t3 * n3)
    x = (t0 * n1 + t1 * c0) + (t2 * n3 - t3 * n2)
    y = (t0 * n2 - t1 * n3) + (t2 * c0 + t3 * n1)
    z = (t0 * n3 + t1 * n2) + (-t2 * n1 + t3 * c0)
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    return _rotation_of_quat(w, x, y, z)


def _clamp_norm(x: float, y: float, z: float, bound: float) -> Vec3:
    norm = math.sqrt((x * x + y * y) + z * z)
    if norm <= bound or norm == 0.0:
        return (x, y, z)
    scale = bound / norm
    return (x * scale, y * scale, z * scale)


class Hand:
    """Drives one scene's movable bodies with bounded force, torque and speed (see the module doc).

    The hand reads the model's timestep, masses and inertias once, when it is made: after changing the
    model, make a new hand.
    """

    # Natural frequency of the set-point tracking (rad/s); critically damped.
    OMEGA_RAD_S = 25.0

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, limits: HandLimits | None = None) -> None:
        self.model = model
        self.data = data
        self.limits = limits or HandLimits.from_model(model)
        self.bodies = movable_bodies(model)
        self.steps_per_action = max(1, round(CONTROL_PERIOD_S / model.opt.timestep))
        updates = PD_UPDATES_PER_ACTION
        substeps = max(1, self.steps_per_action // updates)
        # The last update takes what the others leave of the action's steps.
        self._update_steps = (substeps,) * (updates - 1) + (self.steps_per_action - substeps * (updates - 1),)
        self._update_dt_s = substeps * float(model.opt.timestep)
        self._held: int | None = None
        self._setpoint_pos: Vec3 = (0.0, 0.0, 0.0)
        self._setpoint_quat: Quat = _IDENTITY
        self._setpoint_joint = 0.0
        self._joint_integral = 0.0  # integral action of the joint servo (N·m or N), clamped to the bound
        self._joint_inertia = 0.0  # the held joint's inertia plus what rests on it (kg·m² or kg)
        self._payload_bias = 0.0  # the effort that holds up what rests on the joint (N·m or N)
        # What the controller reads per body, once: masses, body-frame inertias, the joints' own inertia.
        self._subtree_mass = tuple(float(model.body_subtreemass[body.body_id]) for body in self.bodies)
        self._inertia_diagonal = tuple(np.diag(model.body_inertia[body.body_id]) for body in self.bodies)
        self._own_joint_inertia = tuple(1.0 / max(float(model.dof_invweight0[body.dof]), 1e-9) for body in self.bodies)
        free = mujoco.mjtJoint.mjJNT_FREE
        self._rides_freely = tuple(
            bool(model.body_jntnum[other] == 1 and model.jnt_type[model.body_jntadr[other]] == free) for other in range(model.nbody)
        )
        self._velocity = np.zeros(6)  # mj_objectVelocity's output: [angular, linear]

    def index_of(self, name: str) -> int:
        for index, body in enumerate(self.bodies):
            if body.name == name:
                return index
        raise KeyError(f"no movable body {name!r}; the hand can hold {[b.name for b in self.bodies]}")

    def hold_action(self, index: int) -> HandAction:
        """An action that grasps body ``index`` where it is now (a target equal to its current pose)."""
        body = self.bodies[index]
        if body.kind is JointKind.FREE:
            position = self.data.xpos[body.body_id]
            rotation = rotation_vector_from_quat(self.data.xquat[body.body_id])
            return HandAction(index, True, tuple(position), tuple(rotation))  # type: ignore[arg-type]
        return HandAction(index, True, joint=float(self.data.qpos[body.qpos]))

    def act(self, action: HandAction) -> None:
        """Advance the simulation by one control period under ``action``."""
        if not 0 <= action.body < len(self.bodies):
            raise ValueError(f"action body {action.body} is not one of the {len(self.bodies)} movable bodies")
        body = self.bodies[action.body]
        if not action.grasp:
            self._release()
            mujoco.mj_step(self.model, self.data, nstep=self.steps_per_action)
            return
        if self._held != action.body:
            self._release()
            self._held = action.body
            x, y, z = self.data.xpos[body.body_id].tolist()
            w, qx, qy, qz = self.data.xquat[body.body_id].tolist()
            self._setpoint_pos, self._setpoint_quat = (x, y, z), (w, qx, qy, qz)
            self._setpoint_joint = float(self.data.qpos[body.qpos])
            self._joint_integral = 0.0
        if body.kind is JointKind.FREE:
            self._act_free(action.body, body, action)
        else:
            self._act_joint(action.body, body, action)

    def _act_free(self, index: int, body: MovableBody, action: HandAction) -> None:
        """The PD updates of a held free body: set-point toward the target, then the clamped wrench."""
        model, data, limits = self.model, self.data, self.limits
        body_id = body.body_id
        dt = self._update_dt_s
        reach = limits.max_speed_m_s * dt
        turn = limits.max_angular_speed_rad_s * dt
        max_force, max_torque = limits.max_force_n, limits.max_torque_n_m
        omega = self.OMEGA_RAD_S
        stiffness, damping = omega**2, 2 * omega
        mass = self._subtree_mass[index]
        weight = mass * GRAVITY_M_S2
        inertia_diagonal = self._inertia_diagonal[index]
        target_x, target_y, target_z = action.position_m
        target_quat = _quat_of_rotation(*action.rotation_vector)
        set_x, set_y, set_z = self._setpoint_pos
        set_quat = self._setpoint_quat
        velocity = self._velocity
        # Views of the body's rows in `data`, current after every mj_step.
        position, orientation, wrench = data.xpos[body_id], data.xquat[body_id], data.xfrc_applied[body_id]
        frame = data.ximat[body_id].reshape(3, 3)
        frame_transposed = frame.T
        for nstep in self._update_steps:
            # The set-point moves toward the target by at most the speed limits.
            step_x, step_y, step_z = target_x - set_x, target_y - set_y, target_z - set_z
            distance = math.sqrt((step_x * step_x + step_y * step_y) + step_z * step_z)
            if distance <= reach:
                set_x, set_y, set_z = set_x + step_x, set_y + step_y, set_z + step_z
            else:
                scale = reach / distance
                set_x, set_y, set_z = set_x + step_x * scale, set_y + step_y * scale, set_z + step_z * scale
            error_x, error_y, error_z = _quat_error(target_quat, set_quat)
            angle = math.sqrt((error_x * error_x + error_y * error_y) + error_z * error_z)
            if angle > _SMALL_ANGLE_RAD:
                scale = min(1.0, turn / angle)
                partial = _quat_of_rotation(error_x * scale, error_y * scale, error_z * scale)
                set_quat = _normalize_quat(_mul_quat(partial, set_quat))
            # The wrench toward the set-point, gravity compensated.
            mujoco.mj_objectVelocity(model, data, _BODY, body_id, velocity, 0)
            angular_x, angular_y, angular_z, linear_x, linear_y, linear_z = velocity.tolist()
            pos_x, pos_y, pos_z = position.tolist()
            force_x = mass * (stiffness * (set_x - pos_x) - damping * linear_x)
            force_y = mass * (stiffness * (set_y - pos_y) - damping * linear_y)
            force_z = mass * (stiffness * (set_z - pos_z) - damping * linear_z) + weight
            # The body's inertia tensor in the world frame: each axis gets the same natural frequency (a
            # slender part is light about its long axis; one scalar gain would make that axis unstable).
            # ndarray.dot makes the BLAS products `@` makes (the same bits), with less call overhead.
            inertia = frame.dot(inertia_diagonal).dot(frame_transposed)
            error_x, error_y, error_z = _quat_error(set_quat, orientation.tolist())
            acceleration = [
                stiffness * error_x - damping * angular_x,
                stiffness * error_y - damping * angular_y,
                stiffness * error_z - damping * angular_z,
            ]
            torque_x, torque_y, torque_z = inertia.dot(acceleration).tolist()
            wrench[:] = (
                *_clamp_norm(force_x, force_y, force_z, max_force),
                *_clamp_norm(torque_x, torque_y, torque_z, max_torque),
            )
            mujoco.mj_step(model, data, nstep=nstep)
        self._setpoint_pos = (set_x, set_y, set_z)
        self._setpoint_quat = set_quat

    def _act_joint(self, index: int, body: MovableBody, action: HandAction) -> None:
        """The PID updates of a held hinge or slide: set-point toward the target, then the clamped effort.

        A PID servo, slower and more damped than the free-body one: the joint's own inertia does not count
        what rests on it (a load on a lever), so the integral carries that load."""
        model, data, limits = self.model, self.data, self.limits
        # Once per action: what rides on the joint changes as it moves (a load lands, slides, falls off).
        inertia, payload_bias = self._payload(index, body)
        self._joint_inertia, self._payload_bias = inertia, payload_bias
        hinge = body.kind is JointKind.HINGE
        speed = limits.max_joint_speed_rad_s if hinge else limits.max_joint_speed_m_s
        bound = limits.max_torque_n_m if hinge else limits.max_force_n
        dt = self._update_dt_s
        # Gains from the inertia (payload included): s³ + 3ω s² + ω² s + (ω/2)³ is stable, so a light
        # crank does not ring and a loaded lever still gets the integral it needs.
        gain = inertia * (JOINT_OMEGA_RAD_S / 2) ** 3
        stiffness, damping = JOINT_OMEGA_RAD_S**2, 3 * JOINT_OMEGA_RAD_S
        target = action.joint
        setpoint, integral = self._setpoint_joint, self._joint_integral
        qpos, qvel, qfrc_bias, qfrc_applied = data.qpos, data.qvel, data.qfrc_bias, data.qfrc_applied
        address, dof = body.qpos, body.dof
        # The clamps are max(-b, min(b, v)) written out (the builtins cost more than the arithmetic here),
        # with the builtins' choices: min keeps b unless v < b, max keeps -b unless the result > -b.
        reach = speed * dt
        for nstep in self._update_steps:
            step = target - setpoint
            step = step if step < reach else reach
            setpoint += step if step > -reach else -reach
            joint_error = setpoint - qpos.item(address)
            if joint_error * integral < 0:
                integral *= 0.5  # past the target: unwind fast instead of overshooting further
            integral = integral + gain * joint_error * dt
            integral = integral if integral < bound else bound
            integral = integral if integral > -bound else -bound
            effort = (
                inertia * (stiffness * joint_error - damping * qvel.item(dof))
                + integral
                + qfrc_bias.item(dof)
                + payload_bias
            )
            effort = effort if effort < bound else bound
            qfrc_applied[dof] = effort if effort > -bound else -bound
            mujoco.mj_step(model, data, nstep=nstep)
        self._setpoint_joint, self._joint_integral = setpoint, integral

    def _payload(self, index: int, body: MovableBody) -> tuple[float, float]:
        """The joint's own inertia plus that of the free bodies resting on it (a load on a lever), which
        the servo must move too (m·r² about a hinge axis, m along a slide), and the effort that holds
        their weight (the hand compensates gravity on what it carries, as on a held free body)."""
        model, data = self.model, self.data
        inertia = self._own_joint_inertia[index]
        if data.ncon == 0:
            return inertia, 0.0
        body_id = body.body_id
        rides_freely = self._rides_freely
        # The riders in contact order: the sums below add them in the set's order, as they always have.
        riders: set[int] = set()
        for first, second in model.geom_bodyid[data.contact.geom].tolist():
            if body_id == first or body_id == second:
                other = second if first == body_id else first
                if rides_freely[other]:
                    riders.add(other)
        if not riders:
            return inertia, 0.0
        joint = int(model.body_jntadr[body_id])
        axis_x, axis_y, axis_z = data.xaxis[joint].tolist()
        anchor_x, anchor_y, anchor_z = data.xanchor[joint].tolist()
        hinge = body.kind is JointKind.HINGE
        weight_bias = 0.0
        # In floats, as numpy's cross and dot computed them: a 3-vector dot is ((x0*y0 + x1*y1) + x2*y2).
        for other in riders:
            mass = float(model.body_mass[other])
            weight_x, weight_y, weight_z = mass * 0.0, mass * 0.0, mass * -GRAVITY_M_S2
            if hinge:
                center_x, center_y, center_z = data.xipos[other].tolist()
                lever_x, lever_y, lever_z = center_x - anchor_x, center_y - anchor_y, center_z - anchor_z
                arm_x = lever_y * axis_z - lever_z * axis_y
                arm_y = lever_z * axis_x - lever_x * axis_z
                arm_z = lever_x * axis_y - lever_y * axis_x
                inertia += mass * ((arm_x * arm_x + arm_y * arm_y) + arm_z * arm_z)
                moment_x = lever_y * weight_z - lever_z * weight_y
                moment_y = lever_z * weight_x - lever_x * weight_z
                moment_z = lever_x * weight_y - lever_y * weight_x
                weight_bias -= (moment_x * axis_x + moment_y * axis_y) + moment_z * axis_z
            else:
                inertia += mass
                weight_bias -= (weight_x * axis_x + weight_y * axis_y) + weight_z * axis_z
        return inertia, weight_bias

    def _release(self) -> None:
        if self._held is not None:
            self._clear(self.bodies[self._held])
        self._held = None

    def _clear(self, body: MovableBody) -> None:
        self.data.xfrc_applied[body.body_id] = 0.0
        if body.kind is not JointKind.FREE:
            self.data.qfrc_applied[body.dof] = 0.0
