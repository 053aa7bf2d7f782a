"""Where a body fits in a scene: its collision geometry, how far it reaches, the tops of the obstacles, its
overlap were it somewhere else, its clearance to the fixed scene, and the 24 axis-aligned turns.

World frame, metres (clearances in mm). The solvability oracle plans its demonstrations with these.
"""

from __future__ import annotations

import itertools
import math

import mujoco
import numpy as np
import numpy.typing as npt

CLEARANCE_HORIZON_M = 0.01  # gaps wider than this are not measured



def body_geoms(model: mujoco.MjModel, body_id: int) -> list[int]:
    return [g for g in range(model.ngeom) if model.geom_bodyid[g] == body_id and collides(model, g)]


def collides(model: mujoco.MjModel, geom: int) -> bool:
    return bool(model.geom_contype[geom] or model.geom_conaffinity[geom])


def geom_top_z(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> float:
    if model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_PLANE:
        return float(data.geom_xpos[geom][2])
    half = model.geom_aabb[geom][3:]
    rotation = data.geom_xmat[geom].reshape(3, 3)
    center = data.geom_xpos[geom] + rotation @ model.geom_aabb[geom][:3]
    return float(center[2] + np.abs(rotation[2]) @ half)


def reach_m(model: mujoco.MjModel, data: mujoco.MjData, body_id: int) -> float:
    """The radius around the body origin that holds all of its collision geometry."""
    reach = 0.0
    for geom in body_geoms(model, body_id):
        reach = max(reach, float(np.linalg.norm(data.geom_xpos[geom] - data.xpos[body_id])) + float(model.geom_rbound[geom]))
    return reach


def obstacle_top_z(model: mujoco.MjModel, data: mujoco.MjData, body_id: int) -> float:
    tops = [
        geom_top_z(model, data, g)
        for g in range(model.ngeom)
        if model.geom_bodyid[g] != body_id and collides(model, g)
    ]
    return max(tops, default=0.0)


def overlap_at(
    model: mujoco.MjModel, scratch: mujoco.MjData, free_qpos: int, body_id: int, position: npt.NDArray[np.float64], quat: npt.NDArray[np.float64]
) -> tuple[float, str]:
    """The deepest overlap (m) of the body with anything, were it at (position, quat), and with what."""
    scratch.qpos[free_qpos : free_qpos + 3] = position
    scratch.qpos[free_qpos + 3 : free_qpos + 7] = quat
    mujoco.mj_fwdPosition(model, scratch)
    deepest, other = 0.0, ""
    for index in range(scratch.ncon):
        contact = scratch.contact[index]
        pair = (int(model.geom_bodyid[contact.geom1]), int(model.geom_bodyid[contact.geom2]))
        if body_id in pair and -contact.dist > deepest:
            deepest = -float(contact.dist)
            partner = pair[1] if pair[0] == body_id else pair[0]
            other = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, partner) or "the world"
    return deepest, other


def axis_turns() -> list[npt.NDArray[np.float64]]:
    """The 24 rotations that map the axes onto the axes, as quaternions, smallest angle first."""
    turns: list[tuple[float, tuple[float, ...], npt.NDArray[np.float64]]] = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            for row, (col, sign) in enumerate(zip(perm, signs)):
                matrix[row, col] = sign
            if np.linalg.det(matrix) < 0:
                continue
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, matrix.reshape(-1))
            angle = 2 * math.acos(min(1.0, abs(float(quat[0]))))
            turns.append((angle, tuple(np.round(quat, 6)), quat))
    return [quat for _, _, quat in sorted(turns, key=lambda item: (item[0], item[1]))]


AXIS_TURNS = axis_turns()


def clearance_mm(model: mujoco.MjModel, data: mujoco.MjData, body_id: int) -> float:
    """The smallest gap (mm) between the body and the fixed scene beside it, ignoring what it rests on:
    how tight the fit is where it was placed (e.g. a peg's gap to its bore)."""
    tightest = math.inf
    fromto = np.zeros(6)
    for mine in body_geoms(model, body_id):
        for other in range(model.ngeom):
            if model.body_weldid[model.geom_bodyid[other]] != 0 or not collides(model, other):
                continue
            if model.geom_type[other] == mujoco.mjtGeom.mjGEOM_PLANE:
                continue
            distance = mujoco.mj_geomDistance(model, data, mine, other, CLEARANCE_HORIZON_M, fromto)
            if distance >= CLEARANCE_HORIZON_M:
                continue
            # A gap whose direction is mostly vertical is the support under the body, not a side wall.
            direction = fromto[3:] - fromto[:3]
            length = float(np.linalg.norm(direction))
            if length > 1e-9 and abs(direction[2]) / length > 0.7:
                continue
            tightest = min(tightest, max(distance, 0.0) * 1000)
    return tightest


__all__ = [
    "AXIS_TURNS",
    "CLEARANCE_HORIZON_M",
    "axis_turns",
    "body_geoms",
    "clearance_mm",
    "collides",
    "geom_top_z",
    "obstacle_top_z",
    "overlap_at",
    "reach_m",
]
