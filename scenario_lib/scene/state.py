"""The state of a scene's movable bodies, read out of MuJoCo in one compiled call per control step.

`BodyStateReader` wraps the `StateKernel` of ``_state.c``: `refresh` brings a second `mujoco.MjData` (the
*kinematics* data) up to the simulation's qpos and qvel and recomputes its kinematics and velocities;
`read` returns the bodies' poses, velocities and joint values as new arrays (`BodyState`). The simulation
data's own derived quantities are never refreshed in place: after `mujoco.mj_step` they lag its qpos by
one substep and the hand reads them, so refreshing them would change the physics of a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.scene._state import StateKernel
from scenario_lib.scene.actuation import JointKind, MovableBody

Array = npt.NDArray[np.float64]


class BodyState(NamedTuple):
    """One row per movable body, world frame, SI units; every array new."""

    position_m: Array  # (n, 3) body frame origin
    quaternion: Array  # (n, 4) orientation (w, x, y, z)
    linear_velocity_m_s: Array  # (n, 3) velocity of the body frame origin
    angular_velocity_rad_s: Array  # (n, 3)
    joint_position: Array  # (n,) a hinge's (rad) or slide's (m) qpos; 0 for a free body
    joint_velocity: Array  # (n,) its velocity; 0 for a free body


class BodyStateReader:
    """Reads ``bodies``' state of the simulation ``data`` through its own `kinematics` data (a second
    `mujoco.MjData` of ``model``, which `refresh` overwrites; read it for anything else derived from the
    current state, such as a goal distance or a rendered frame)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, bodies: Sequence[MovableBody]) -> None:
        self.kinematics = mujoco.MjData(model)
        self._kernel = StateKernel(
            model,
            data,
            self.kinematics,
            [body.body_id for body in bodies],
            [body.qpos for body in bodies],
            [body.dof for body in bodies],
            # A free body's qpos address is its x coordinate: the kernel multiplies it by 0.0.
            [body.kind is not JointKind.FREE for body in bodies],
        )

    def refresh(self) -> None:
        """Copy the simulation's qpos and qvel into the kinematics data and recompute its positions,
        centre-of-mass quantities and velocities (mj_kinematics, mj_comPos, mj_comVel)."""
        self._kernel.refresh()

    def read(self) -> BodyState:
        """The bodies' state as the last `refresh` left the kinematics data."""
        return BodyState._make(self._kernel.read())


__all__ = ["BodyState", "BodyStateReader"]
