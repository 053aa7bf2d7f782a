"""`scenario_lib.scene.state`: the compiled reader of the movable bodies' state gives, bit for bit, what
numpy's take and MuJoCo's own Python calls give on a second MjData (a real scene with free, hinged and
sliding bodies, driven through every path of the hand)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from scenario_lib.scene.actuation import Hand, JointKind, movable_bodies
from scenario_lib.scene._state import StateKernel
from scenario_lib.scene.state import BodyStateReader
from tests.scene.test_actuation import SCENE_XML, random_actions


def reference_state(model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
    """The state as the numpy formulation the environment used before the reader read it."""
    kinematics = mujoco.MjData(model)
    kinematics.qpos[:] = data.qpos
    kinematics.qvel[:] = data.qvel
    mujoco.mj_kinematics(model, kinematics)
    mujoco.mj_comPos(model, kinematics)
    mujoco.mj_comVel(model, kinematics)
    bodies = movable_bodies(model)
    ids = np.array([body.body_id for body in bodies], dtype=np.intp)
    jointed = np.array([0.0 if body.kind is JointKind.FREE else 1.0 for body in bodies])
    velocity = np.empty((len(bodies), 6))
    for row, body_id in enumerate(ids.tolist()):
        mujoco.mj_objectVelocity(model, kinematics, mujoco.mjtObj.mjOBJ_BODY, body_id, velocity[row], 0)
    return {
        "position_m": kinematics.xpos.take(ids, axis=0),
        "quaternion": kinematics.xquat.take(ids, axis=0),
        "linear_velocity_m_s": velocity[:, 3:].copy(),
        "angular_velocity_rad_s": velocity[:, :3].copy(),
        "joint_position": kinematics.qpos.take([body.qpos for body in bodies]) * jointed,
        "joint_velocity": kinematics.qvel.take([body.dof for body in bodies]) * jointed,
    }


@pytest.mark.parametrize("seed", [0, 1], ids=["seed0", "seed1"])
def test_the_reader_is_the_numpy_formulation_bit_for_bit(seed: int) -> None:
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    hand = Hand(model, data)
    reader = BodyStateReader(model, data, hand.bodies)
    moving = 0
    for action in random_actions(hand, np.random.default_rng(seed), 120):
        hand.act(action)
        reader.refresh()
        state = reader.read()
        expected = reference_state(model, data)
        for name, array in expected.items():
            read = getattr(state, name)
            assert read.dtype == np.float64 and read.shape == array.shape, name
            assert read.tobytes() == array.tobytes(), f"{name} differs after {action}"
        moving += bool(np.abs(state.linear_velocity_m_s).max() > 1e-3)
    assert moving > 60, "the scene hardly moved: the comparison would not test velocities"
    # A free body's joint values are zeros; the hinge and slide read their qpos.
    assert state.joint_position[0] == 0.0 and state.joint_position[1] == data.qpos[hand.bodies[1].qpos]


def test_every_read_is_a_new_array_the_simulation_does_not_change() -> None:
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    hand = Hand(model, data)
    reader = BodyStateReader(model, data, hand.bodies)
    reader.refresh()
    first = reader.read()
    kept = [array.copy() for array in first]
    lift = dataclasses.replace(hand.hold_action(0), position_m=(0.3, 0.0, 0.2))
    for _ in range(5):
        hand.act(lift)
    reader.refresh()
    second = reader.read()
    assert all(np.array_equal(before, after) for before, after in zip(kept, first))
    assert not np.array_equal(first.position_m, second.position_m)
    assert all(not np.shares_memory(a, b) for a in first for b in second)


def test_the_kernel_refuses_the_simulations_own_data_as_kinematics() -> None:
    model = mujoco.MjModel.from_xml_string(SCENE_XML)
    data = mujoco.MjData(model)
    with pytest.raises(ValueError, match="second MjData"):
        StateKernel(model, data, data, [1], [0], [0], [False])
