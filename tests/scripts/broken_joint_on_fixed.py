"""Broken on purpose: the success condition asks a joint angle of a body that has no joint."""

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Body, Box, JointInRange, Pose, Scenario


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    return Scenario(
        family="broken_joint_on_fixed",
        objective="Turn the lever past 30 degrees.",
        bodies=(
            Body(name="base", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=SolidBox(30, 30, 30), motion=FREE, pose=Pose(position_mm=(0, 0, 15.05)),
                 primitives=(Box(half_size_mm=(15, 15, 15)),)),
        ),
        success=JointInRange(body="base", low=30, high=90),
    )
