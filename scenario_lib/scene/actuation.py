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
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import numpy.typing as npt

CONTROL_PERIOD_S = 0.02  # 50 Hz: one action per 20 ms
PD_UPDATES_PER_ACTION = 4  # the wrench is recomputed every 5 ms within an action
ACTION_SIZE = 9
GRAVITY_M_S2 = 9.81
JOINT_OMEGA_RAD_S = 15.0  # the joint servo's natural frequency (damping ratio 1.5)

Vector = npt.NDArray[np.float64]


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
        return cls(
            body=int(round(values[0])),
            grasp=bool(values[1] > 0.5),
            position_m=(float(values[2]), float(values[3]), float(values[4])),
            rotation_vector=(float(values[5]), float(values[6]), float(values[7])),
            joint=float(values[8]),
        )


@dataclass(frozen=True)
class MovableBody:
    """A body the hand can hold: free (6 dof) or on one hinge or slide joint."""

    name: str
    body_id: int
    kind: str  # "free", "hinge" or "slide"
    dof: int  # first dof address
    qpos: int  # first qpos address


def movable_bodies(model: mujoco.MjModel) -> tuple[MovableBody, ...]:
    """The bodies of ``model`` with exactly one free, hinge or slide joint, in body order."""
    kinds = {mujoco.mjtJoint.mjJNT_FREE: "free", mujoco.mjtJoint.mjJNT_HINGE: "hinge", mujoco.mjtJoint.mjJNT_SLIDE: "slide"}
    found = []
    for body in range(1, model.nbody):
        if model.body_jntnum[body] != 1:
            continue
        joint = int(model.body_jntadr[body])
        kind = kinds.get(mujoco.mjtJoint(model.jnt_type[joint]))
        if kind is None:
            continue
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body) or f"body{body}"
        found.append(MovableBody(name, body, kind, int(model.jnt_dofadr[joint]), int(model.jnt_qposadr[joint])))
    return tuple(found)


def quat_from_rotation_vector(vector: npt.ArrayLike) -> Vector:
    quat = np.zeros(4)
    rotation = np.asarray(vector, dtype=float)
    angle = float(np.linalg.norm(rotation))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    mujoco.mju_axisAngle2Quat(quat, rotation / angle, angle)
    return quat


def rotation_vector_from_quat(quat: npt.ArrayLike) -> Vector:
    vector = np.zeros(3)
    mujoco.mju_quat2Vel(vector, np.asarray(quat, dtype=float), 1.0)
    return vector


def _quat_error(target: Vector, current: Vector) -> Vector:
    """The rotation vector (world frame) that turns ``current`` into ``target``."""
    difference = np.zeros(4)
    conjugate = np.zeros(4)
    mujoco.mju_negQuat(conjugate, current)
    mujoco.mju_mulQuat(difference, target, conjugate)
    if difference[0] < 0:
        difference = -difference
    return rotation_vector_from_quat(difference)


class Hand:
    """Drives one scene's movable bodies with bounded force, torque and speed (see the module doc)."""

    # Natural frequency of the set-point tracking (rad/s); critically damped.
    OMEGA_RAD_S = 25.0

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, limits: HandLimits | None = None) -> None:
        self.model = model
        self.data = data
        self.limits = limits or HandLimits.from_model(model)
        self.bodies = movable_bodies(model)
        self.steps_per_action = max(1, round(CONTROL_PERIOD_S / model.opt.timestep))
        self._held: int | None = None
        self._setpoint_pos = np.zeros(3)
        self._setpoint_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self._setpoint_joint = 0.0
        self._joint_integral = 0.0  # integral action of the joint servo (N·m or N), clamped to the bound
        self._joint_inertia = 0.0  # the held joint's inertia plus what rests on it (kg·m² or kg)
        self._payload_bias = 0.0  # the effort that holds up what rests on the joint (N·m or N)

    def index_of(self, name: str) -> int:
        for index, body in enumerate(self.bodies):
            if body.name == name:
                return index
        raise KeyError(f"no movable body {name!r}; the hand can hold {[b.name for b in self.bodies]}")

    def hold_action(self, index: int) -> HandAction:
        """An action that grasps body ``index`` where it is now (a target equal to its current pose)."""
        body = self.bodies[index]
        if body.kind == "free":
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
            self._setpoint_pos = self.data.xpos[body.body_id].copy()
            self._setpoint_quat = self.data.xquat[body.body_id].copy()
            self._setpoint_joint = float(self.data.qpos[body.qpos])
            self._joint_integral = 0.0
        if body.kind != "free":
            # Once per action: what rides on the joint changes as it moves (a load lands, slides, falls off).
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
        """The joint's own inertia plus that of the free bodies resting on it (a load on a lever), which
        the servo must move too (m·r² about a hinge axis, m along a slide), and the effort that holds
        their weight (the hand compensates gravity on what it carries, as on a held free body)."""
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
        gravity = np.array([0.0, 0.0, -GRAVITY_M_S2])
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
            self._clear(self.bodies[self._held])
        self._held = None

    def _clear(self, body: MovableBody) -> None:
        self.data.xfrc_applied[body.body_id] = 0.0
        if body.kind != "free":
            self.data.qfrc_applied[body.dof] = 0.0

    def _advance_setpoint(self, body: MovableBody, action: HandAction, dt: float) -> None:
        limits = self.limits
        if body.kind == "free":
            step = np.asarray(action.position_m) - self._setpoint_pos
            distance = float(np.linalg.norm(step))
            reach = limits.max_speed_m_s * dt
            self._setpoint_pos = self._setpoint_pos + (step if distance <= reach else step * (reach / distance))
            target = quat_from_rotation_vector(action.rotation_vector)
            error = _quat_error(target, self._setpoint_quat)
            angle = float(np.linalg.norm(error))
            turn = limits.max_angular_speed_rad_s * dt
            if angle > 1e-12:
                partial = quat_from_rotation_vector(error * min(1.0, turn / angle))
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
            force[2] += mass * GRAVITY_M_S2
            # The body's inertia tensor in the world frame: each axis gets the same natural frequency (a
            # slender part is light about its long axis; one scalar gain would make that axis unstable).
            frame = data.ximat[body.body_id].reshape(3, 3)
            inertia = frame @ np.diag(model.body_inertia[body.body_id]) @ frame.T
            error = _quat_error(self._setpoint_quat, data.xquat[body.body_id])
            torque = inertia @ (omega**2 * error - 2 * omega * angular)
            data.xfrc_applied[body.body_id, :3] = _clamp_norm(force, limits.max_force_n)
            data.xfrc_applied[body.body_id, 3:] = _clamp_norm(torque, limits.max_torque_n_m)
            return
        # A PID servo, slower and more damped than the free-body one: the joint's own inertia does not
        # count what rests on it (a load on a lever), so the integral carries that load.
        inertia = self._joint_inertia
        joint_error = self._setpoint_joint - float(data.qpos[body.qpos])
        bound = limits.max_torque_n_m if body.kind == "hinge" else limits.max_force_n
        # Gains from the inertia (payload included): s³ + 3ω s² + ω² s + (ω/2)³ is stable, so a light
        # crank does not ring and a loaded lever still gets the integral it needs.
        gain = inertia * (JOINT_OMEGA_RAD_S / 2) ** 3
        if joint_error * self._joint_integral < 0:
            self._joint_integral *= 0.5  # past the target: unwind fast instead of overshooting further
        self._joint_integral = max(-bound, min(bound, self._joint_integral + gain * joint_error * dt))
        effort = (
            inertia * (JOINT_OMEGA_RAD_S**2 * joint_error - 3 * JOINT_OMEGA_RAD_S * float(data.qvel[body.dof]))
            + self._joint_integral
            + float(data.qfrc_bias[body.dof])
            + self._payload_bias
        )
        data.qfrc_applied[body.dof] = max(-bound, min(bound, effort))


def _clamp_norm(vector: Vector, bound: float) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector if norm <= bound or norm == 0.0 else vector * (bound / norm)
