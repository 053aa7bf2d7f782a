"""Broken on purpose: the cube starts inside its goal zone, so the task is solved at t=0."""

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Body, Box, InsideZone, Pose, Scenario, Zone


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    return Scenario(
        family="broken_already_solved",
        objective="Push the cube into the goal zone.",
        bodies=(
            Body(name="floor", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=SolidBox(30, 30, 30), motion=FREE, pose=Pose(position_mm=(0, 0, 15.05)),
                 primitives=(Box(half_size_mm=(15, 15, 15)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(10, 0, 15), half_extents_mm=(40, 40, 30))),
    )
