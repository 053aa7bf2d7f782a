"""A tiny valid scenario: a cube resting on a fixed floor slab, to be pushed into a goal zone."""

import random

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Box, Body, InsideZone, ParameterRange, Pose, Scenario, ScaleLimits, Zone


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    side = rng.uniform(20.0, 40.0)
    sx, sy, sz = (side * scale[0], side * scale[1], side * scale[2])
    floor = SolidBox(400.0, 400.0, 10.0)
    cube = SolidBox(sx, sy, sz)
    return Scenario(
        family="push_box",
        objective="Push the cube into the green goal zone.",
        bodies=(
            Body(name="floor", part=floor, pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=cube, motion=FREE, pose=Pose(position_mm=(0, 0, sz / 2 + 0.05)),
                 primitives=(Box(half_size_mm=(sx / 2, sy / 2, sz / 2)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(120, 0, sz / 2),
                                                  half_extents_mm=(30, 30, sz))),
        parameters={"side_mm": side},
        parameter_ranges=(ParameterRange(name="side_mm", low=20, high=40),),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2, 2, 2)),
    )
