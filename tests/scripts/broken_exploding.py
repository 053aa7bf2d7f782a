"""Broken on purpose: two free 300 mm crates start almost fully overlapped above a floor.

MuJoCo's soft contacts push them apart and the scene gains energy it never had (and the start
penetration is 280 mm).
"""

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Body, Box, InsideZone, Pose, Scenario, Zone

SIDE_MM = 300.0
OFFSET_MM = 20.0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    half = SIDE_MM / 2
    crate = SolidBox(SIDE_MM, SIDE_MM, SIDE_MM)
    return Scenario(
        family="broken_exploding",
        objective="Push the left crate into the goal zone.",
        bodies=(
            Body(name="floor", part=SolidBox(2000, 2000, 10), pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(1000, 1000, 5)),)),
            Body(name="left", part=crate, motion=FREE, pose=Pose(position_mm=(0, 0, half + 0.05)),
                 primitives=(Box(half_size_mm=(half, half, half)),), density_kg_m3=100),
            Body(name="right", part=crate, motion=FREE, pose=Pose(position_mm=(OFFSET_MM, 0, half + 0.05)),
                 primitives=(Box(half_size_mm=(half, half, half)),), density_kg_m3=100),
        ),
        success=InsideZone(body="left",
                           zone=Zone(name="goal", center_mm=(600, 0, half), half_extents_mm=(200, 200, 200))),
    )
