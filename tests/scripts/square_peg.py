"""A square peg standing on a table beside a block with a square through hole; 0.3 mm radial clearance."""

import random

from build123d import Box as SolidBox

from scenario_lib.contract import FREE, Body, Box, InsideZone, Pose, Scenario, ScaleLimits, Zone

PEG_HALF_MM = 8.0
HOLE_HALF_MM = 8.3
WALL_MM = 15.0
BLOCK_H_MM = 30.0
PEG_LENGTH_MM = 50.0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    offset = rng.uniform(70.0, 100.0)
    outer = HOLE_HALF_MM + WALL_MM
    block = SolidBox(2 * outer, 2 * outer, BLOCK_H_MM).cut(SolidBox(2 * HOLE_HALF_MM, 2 * HOLE_HALF_MM, BLOCK_H_MM + 2))
    sides = (
        Box(half_size_mm=(WALL_MM / 2, outer, BLOCK_H_MM / 2), pose=Pose(position_mm=(HOLE_HALF_MM + WALL_MM / 2, 0, 0))),
        Box(half_size_mm=(WALL_MM / 2, outer, BLOCK_H_MM / 2), pose=Pose(position_mm=(-HOLE_HALF_MM - WALL_MM / 2, 0, 0))),
        Box(half_size_mm=(HOLE_HALF_MM, WALL_MM / 2, BLOCK_H_MM / 2), pose=Pose(position_mm=(0, HOLE_HALF_MM + WALL_MM / 2, 0))),
        Box(half_size_mm=(HOLE_HALF_MM, WALL_MM / 2, BLOCK_H_MM / 2), pose=Pose(position_mm=(0, -HOLE_HALF_MM - WALL_MM / 2, 0))),
    )
    return Scenario(
        family="peg_in_hole",
        objective="Insert the square peg into the hole.",
        bodies=(
            Body(name="table", part=SolidBox(320, 200, 10), pose=Pose(position_mm=(-60, 0, -5)),
                 primitives=(Box(half_size_mm=(160, 100, 5)),)),
            Body(name="block", part=block, pose=Pose(position_mm=(0, 0, BLOCK_H_MM / 2)), primitives=sides,
                 density_kg_m3=2700.0),
            Body(name="peg", part=SolidBox(2 * PEG_HALF_MM, 2 * PEG_HALF_MM, PEG_LENGTH_MM), motion=FREE,
                 density_kg_m3=7850.0, pose=Pose(position_mm=(-offset, 0, PEG_LENGTH_MM / 2 + 0.05)),
                 primitives=(Box(half_size_mm=(PEG_HALF_MM, PEG_HALF_MM, PEG_LENGTH_MM / 2)),)),
        ),
        success=InsideZone(body="peg", zone=Zone(name="bore", center_mm=(0, 0, PEG_LENGTH_MM / 2 + 5),
                                                 half_extents_mm=(1.5, 1.5, 8))),
        parameters={"offset_mm": offset},
        scale_limits=ScaleLimits(low=(1.0, 1.0, 1.0), high=(1.0, 1.0, 1.0)),
    )
