"""Broken on purpose: a free cube starts half sunk into the fixed block it should rest on."""

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Body, Box, InsideZone, Pose, Scenario, Zone

SINK_MM = 10.0  # how deep the 20 mm cube starts inside the block


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    return Scenario(
        family="broken_interpenetrating",
        objective="Push the cube into the goal zone.",
        bodies=(
            Body(name="block", part=SolidBox(200, 200, 20), pose=Pose(position_mm=(0, 0, -10)),
                 primitives=(Box(half_size_mm=(100, 100, 10)),)),
            Body(name="cube", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=(0, 0, 10 - SINK_MM)),
                 primitives=(Box(half_size_mm=(10, 10, 10)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(60, 0, 10), half_extents_mm=(15, 15, 15))),
    )
