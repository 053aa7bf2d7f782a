"""The action and observation spaces of one scene, and the observation read from a simulation state.

Actions are the abstract hand's (`scenario_lib.scene.actuation`): ``[body, grasp, x, y, z, rx, ry, rz,
joint]`` with absolute targets (metres, a rotation vector in radians, the joint's qpos in radians or
metres). The bounds cover the scene's workspace, every joint's travel and goal, and every action of the
stored demonstration, so the demonstration is a valid action sequence as stored.

Observations are a dict of arrays, one row per movable body (`Hand.bodies` order), world frame, SI units:

==============================  ==========  ===================================================================
key                             shape       what
==============================  ==========  ===================================================================
``body_position_m``             (n, 3)      body frame origin
``body_quaternion``             (n, 4)      body orientation (w, x, y, z)
``body_linear_velocity_m_s``    (n, 3)      velocity of the body frame origin
``body_angular_velocity_rad_s`` (n, 3)      angular velocity
``joint_position``              (n,)        a hinge's (rad) or slide's (m) qpos; 0 for a free body
``joint_velocity``              (n,)        its velocity (rad/s or m/s); 0 for a free body
``hand_grasping``               Discrete 2  1 while the hand holds a body
``hand_body``                   Discrete n  the body the hand holds (or last held)
``hand_target``                 (7,)        the last target: position (m), rotation vector (rad), joint
``goal_active``                 (n,)        1 for a body the success condition names
``goal_zone_center_m``          (n, 3)      centre of the body's goal zone (0 without one)
``goal_zone_half_extents_m``    (n, 3)      half extents of that zone (0 without one)
``goal_joint_range``            (n, 2)      the joint's goal range as qpos (0 without one)
``goal_distance``               (1,)        the task's goal distance over its initial value (1 at the start)
==============================  ==========  ===================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from scenario_lib.contract import AllOf, InsideZone, JointInRange, SuccessCondition
from scenario_lib.scene.actuation import ACTION_SIZE, JointKind, MovableBody
from scenario_lib.scene.state import BodyState

Array = npt.NDArray[np.float64]
Observation = dict[str, Any]

# The workspace a target may lie in: this many times the scene's extent around its centre (MuJoCo's
# model.stat), and never less than 10 cm, so a carried body can be lifted clear of everything.
WORKSPACE_EXTENT_FACTOR = 2.0
MIN_WORKSPACE_M = 0.1
# Without a range, a hinge is commanded within half a turn of its start, a slide within the workspace.
UNLIMITED_HINGE_TRAVEL_RAD = math.pi


def _leaves(condition: SuccessCondition) -> list[InsideZone | JointInRange]:
    if isinstance(condition, AllOf):
        return [leaf for inner in condition.conditions for leaf in _leaves(inner)]
    return [condition]


@dataclass(frozen=True)
class SceneSpaces:
    """What is fixed for one scene: the movable bodies, the spaces, and the goal as arrays."""

    bodies: tuple[MovableBody, ...]
    action_low: Array
    action_high: Array
    goal_active: npt.NDArray[np.int8]
    goal_zone_center_m: Array
    goal_zone_half_extents_m: Array
    goal_joint_range: Array

    @classmethod
    def from_scene(
        cls,
        model: mujoco.MjModel,
        bodies: tuple[MovableBody, ...],
        condition: SuccessCondition,
        demonstration_actions: tuple[tuple[float, ...], ...] = (),
    ) -> SceneSpaces:
        """The spaces of ``model`` for the hand's ``bodies``, its success ``condition`` and the stored
        demonstration's actions (which the action bounds always contain)."""
        count = len(bodies)
        index = {body.name: position for position, body in enumerate(bodies)}
        active = np.zeros(count, dtype=np.int8)
        zone_low = np.full((count, 3), -np.inf)
        zone_high = np.full((count, 3), np.inf)
        joint_low = np.full(count, -np.inf)
        joint_high = np.full(count, np.inf)
        for leaf in _leaves(condition):
            position = index.get(leaf.body)
            if position is None:
                continue  # not a body the hand holds; goal_distance still counts it
            active[position] = 1
            body = bodies[position]
            if isinstance(leaf, InsideZone):
                # Several zones for one body: it must be in all of them, i.e. in their intersection.
                center = np.asarray(leaf.zone.center_mm) / 1000
                half = np.asarray(leaf.zone.half_extents_mm) / 1000
                zone_low[position] = np.maximum(zone_low[position], center - half)
                zone_high[position] = np.minimum(zone_high[position], center + half)
            else:
                # The condition is a displacement from the declared pose, in degrees or mm; the goal is in qpos.
                to_qpos = math.radians if body.kind is JointKind.HINGE else (lambda value: value / 1000)
                start = float(model.qpos0[body.qpos])
                joint_low[position] = max(joint_low[position], start + to_qpos(leaf.low))
                joint_high[position] = min(joint_high[position], start + to_qpos(leaf.high))
        has_zone = np.isfinite(zone_low).all(axis=1)
        has_joint = np.isfinite(joint_low)
        center = np.zeros((count, 3))
        half = np.zeros((count, 3))
        center[has_zone] = (zone_low[has_zone] + zone_high[has_zone]) / 2
        half[has_zone] = (zone_high[has_zone] - zone_low[has_zone]) / 2
        joint_range = np.zeros((count, 2))
        joint_range[has_joint] = np.stack([joint_low[has_joint], joint_high[has_joint]], axis=1)
        low, high = _action_bounds(model, bodies, joint_range[has_joint], demonstration_actions)
        return cls(bodies, low, high, active, center, half, joint_range)

    @property
    def action_space(self) -> spaces.Box:
        return spaces.Box(self.action_low, self.action_high, shape=(ACTION_SIZE,), dtype=np.float64)

    @property
    def observation_space(self) -> spaces.Dict:
        count = len(self.bodies)

        def unbounded(*shape: int) -> spaces.Box:
            return spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float64)

        return spaces.Dict(
            {
                "body_position_m": unbounded(count, 3),
                "body_quaternion": unbounded(count, 4),
                "body_linear_velocity_m_s": unbounded(count, 3),
                "body_angular_velocity_rad_s": unbounded(count, 3),
                "joint_position": unbounded(count),
                "joint_velocity": unbounded(count),
                "hand_grasping": spaces.Discrete(2),
                "hand_body": spaces.Discrete(count),
                "hand_target": unbounded(ACTION_SIZE - 2),
                "goal_active": spaces.MultiBinary(count),
                "goal_zone_center_m": unbounded(count, 3),
                "goal_zone_half_extents_m": spaces.Box(0.0, np.inf, shape=(count, 3), dtype=np.float64),
                "goal_joint_range": unbounded(count, 2),
                "goal_distance": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float64),
            }
        )


def _action_bounds(
    model: mujoco.MjModel,
    bodies: tuple[MovableBody, ...],
    goal_joint_ranges: Array,
    demonstration_actions: tuple[tuple[float, ...], ...],
) -> tuple[Array, Array]:
    reach = max(WORKSPACE_EXTENT_FACTOR * float(model.stat.extent), MIN_WORKSPACE_M)
    center = np.asarray(model.stat.center, dtype=np.float64)
    # 0 is always a valid joint value: the hand ignores the joint of a free body, and stored actions carry 0
    # (with no jointed body the component means nothing; ±1 keeps the interval from being empty).
    joint_values = [0.0, *goal_joint_ranges.reshape(-1).tolist()]
    if all(body.kind is JointKind.FREE for body in bodies):
        joint_values += [-1.0, 1.0]
    for body in bodies:
        if body.kind is JointKind.FREE:
            continue
        joint = int(model.body_jntadr[body.body_id])
        start = float(model.qpos0[body.qpos])
        if model.jnt_limited[joint]:
            joint_values += [float(model.jnt_range[joint][0]), float(model.jnt_range[joint][1])]
        else:
            travel = UNLIMITED_HINGE_TRAVEL_RAD if body.kind is JointKind.HINGE else reach
            joint_values += [start - travel, start + travel]
    # The body index is a continuous relaxation of a choice: each body owns a width-1 interval around its
    # index (`snap_body` rounds), so uniform samples pick every body equally often.
    low = np.array([-0.5, 0.0, *(center - reach), -math.pi, -math.pi, -math.pi, min(joint_values)])
    high = np.array([len(bodies) - 0.5, 1.0, *(center + reach), math.pi, math.pi, math.pi, max(joint_values)])
    if demonstration_actions:
        stored = np.asarray(demonstration_actions, dtype=np.float64)
        low = np.minimum(low, stored.min(axis=0))
        high = np.maximum(high, stored.max(axis=0))
    return low, high


def snap_body(value: float, count: int) -> float:
    """The index of the body a (clipped) action's first component chooses among ``count`` bodies."""
    index = round(value)
    return float(0 if index < 0 else count - 1 if index >= count else index)


class Observer:
    """Makes a scene's observations (the layout in the module doc) from its bodies' state."""

    def __init__(self, scene: SceneSpaces) -> None:
        self._scene = scene
        # The discrete components' values (0 or 1, a body index) as numpy scalars: they are immutable, so one
        # per value serves every observation.
        self._scalars = tuple(np.int64(value) for value in range(max(2, len(scene.bodies))))

    def observe(self, state: BodyState, *, grasping: bool, held: int, target: Sequence[float], goal_distance: float) -> Observation:
        """The observation of ``state`` (whose arrays it takes as they are) and the hand's and goal's values.
        Every array is new: none is shared with the simulation or with an earlier observation."""
        scene = self._scene
        return {
            "body_position_m": state.position_m,
            "body_quaternion": state.quaternion,
            "body_linear_velocity_m_s": state.linear_velocity_m_s,
            "body_angular_velocity_rad_s": state.angular_velocity_rad_s,
            "joint_position": state.joint_position,
            "joint_velocity": state.joint_velocity,
            "hand_grasping": self._scalars[grasping],
            "hand_body": self._scalars[held],
            "hand_target": np.array(target, dtype=np.float64),
            "goal_active": scene.goal_active.copy(),
            "goal_zone_center_m": scene.goal_zone_center_m.copy(),
            "goal_zone_half_extents_m": scene.goal_zone_half_extents_m.copy(),
            "goal_joint_range": scene.goal_joint_range.copy(),
            "goal_distance": np.array([goal_distance]),
        }


__all__ = ["Observation", "Observer", "SceneSpaces", "snap_body"]
