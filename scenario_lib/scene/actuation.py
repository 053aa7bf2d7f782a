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
few tens of microseconds, so it is compiled: `scenario_lib/scene/_hand.c` (`HandKernel`) runs an action's PD
updates and MuJoCo steps in one call. Every value it hands to MuJoCo is bit-identical to the numpy
formulation the stored demonstrations were recorded with (``tests/scene/test_actuation.py`` checks it on
random actions): the same IEEE operations in the same order, the quaternion steps in the order of MuJoCo's
``mju_*`` routines, and the two inertia products with the fused multiply-adds of the BLAS kernels numpy
used, written out (so they no longer depend on the CPU's BLAS kernel either).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.scene._hand import HandKernel

CONTROL_PERIOD_S = 0.02  # 50 Hz: one action per 20 ms
PD_UPDATES_PER_ACTION = 4  # the wrench is recomputed every 5 ms within an action
ACTION_SIZE = 9
GRAVITY_M_S2 = 9.81
JOINT_OMEGA_RAD_S = 15.0  # the joint servo's natural frequency (damping ratio 1.5)

Vector = npt.NDArray[np.float64]
Quat = tuple[float, float, float, float]
Vec3 = tuple[float, float, float]

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


# Rotation vectors and quaternions on floats, (w, x, y, z), in the operation order of libmujoco's compiled
# mju_quat2Vel and mju_axisAngle2Quat (MuJoCo 4.0), so the results are theirs bit for bit: keep the parentheses.


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


class Hand:
    """Drives one scene's movable bodies with bounded force, torque and speed (see the module doc).

    The controller and its MuJoCo steps run in the compiled `HandKernel` (``_hand.c``), one call per
    action. The hand reads the model's timestep, masses and inertias once, when it is made: after changing
    the model, make a new hand.
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
        update_steps = (substeps,) * (updates - 1) + (self.steps_per_action - substeps * (updates - 1),)
        free = mujoco.mjtJoint.mjJNT_FREE
        rides_freely = bytes(
            bool(model.body_jntnum[other] == 1 and model.jnt_type[model.body_jntadr[other]] == free) for other in range(model.nbody)
        )
        limits = self.limits
        self.kernel = HandKernel(
            model,
            data,
            [_kernel_row(model, body) for body in self.bodies],
            rides_freely,
            (
                limits.max_force_n,
                limits.max_torque_n_m,
                limits.max_speed_m_s,
                limits.max_angular_speed_rad_s,
                limits.max_joint_speed_rad_s,
                limits.max_joint_speed_m_s,
            ),
            (self.OMEGA_RAD_S, JOINT_OMEGA_RAD_S, GRAVITY_M_S2),
            update_steps,
            substeps * float(model.opt.timestep),
            self.steps_per_action,
        )

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
        x, y, z = action.position_m
        rx, ry, rz = action.rotation_vector
        self.kernel.act(action.body, action.grasp, x, y, z, rx, ry, rz, action.joint)

    def act_floats(self, values: Sequence[float]) -> None:
        """`act` for an action as ``ACTION_SIZE`` floats ``[body, grasp, x, y, z, rx, ry, rz, joint]`` (the body
        index already a whole number), without making a `HandAction`."""
        body, grasp, x, y, z, rx, ry, rz, joint = values
        self.kernel.act(int(body), grasp > 0.5, x, y, z, rx, ry, rz, joint)


def _kernel_row(model: mujoco.MjModel, body: MovableBody) -> tuple[int, int, int, int, float, float, float, float, float]:
    """What the kernel reads of one movable body: ids, addresses, subtree mass, body-frame inertia diagonal,
    and the joint's own inertia."""
    inertia_x, inertia_y, inertia_z = (float(value) for value in model.body_inertia[body.body_id])
    return (
        body.body_id,
        _KERNEL_KINDS[body.kind],
        body.dof,
        body.qpos,
        float(model.body_subtreemass[body.body_id]),
        inertia_x,
        inertia_y,
        inertia_z,
        1.0 / max(float(model.dof_invweight0[body.dof]), 1e-9),
    )


_KERNEL_KINDS = {JointKind.FREE: 0, JointKind.HINGE: 1, JointKind.SLIDE: 2}
