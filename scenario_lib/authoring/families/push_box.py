"""Push box: a block or puck rests on a floor slab; push it into a goal zone on the floor.

The smallest useful scenario (tier test_dummy): one free body, one fixed slab, primitive collision.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder

from scenario_lib.contract import (
    FREE,
    Body,
    Box,
    Cylinder,
    InsideZone,
    ParameterRange,
    Pose,
    Scenario,
    ScaleLimits,
    Zone,
)

# Structural choices of this script (the offline author rewrites this block per author seed).
DESIGN = {
    "shape": "cube",
    "goal_direction": "+x",
}

RANGES = {
    "size_mm": (20.0, 40.0, "mm"),
    "goal_distance_mm": (80.0, 140.0, "mm"),
    "goal_half_mm": (25.0, 35.0, "mm"),
}
FLOOR_THICKNESS_MM = 10.0
GAP_MM = 0.05  # start just above the floor: no interpenetration at t=0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    sxy = math.sqrt(sx * sy)  # round things scale isotropically in the plane

    height = p["size_mm"] * sz
    if DESIGN["shape"] == "cube":
        half_x, half_y = p["size_mm"] * sx / 2, p["size_mm"] * sy / 2
        mover = SolidBox(2 * half_x, 2 * half_y, height)
        mover_collision: Box | Cylinder = Box(half_size_mm=(half_x, half_y, height / 2))
    else:
        radius = p["size_mm"] * sxy / 2
        half_x = half_y = radius
        mover = SolidCylinder(radius, height)
        mover_collision = Cylinder(radius_mm=radius, half_length_mm=height / 2)

    axis = {"+x": (1, 0), "-x": (-1, 0), "+y": (0, 1), "-y": (0, -1)}[DESIGN["goal_direction"]]
    distance = p["goal_distance_mm"] * (sx if axis[0] else sy)
    goal_half = (p["goal_half_mm"] * sx, p["goal_half_mm"] * sy)
    goal = (axis[0] * distance, axis[1] * distance)
    floor_half = (distance + goal_half[0] + 2 * half_x + 40 * sx, distance + goal_half[1] + 2 * half_y + 40 * sy)
    floor_t = FLOOR_THICKNESS_MM * sz
    floor = SolidBox(2 * floor_half[0], 2 * floor_half[1], floor_t)

    return Scenario(
        family="push_box",
        objective=(
            f"Push the {DESIGN['shape']} along the floor into the green goal zone "
            f"{distance:.0f} mm away in the {DESIGN['goal_direction']} direction."
        ),
        bodies=(
            Body(
                name="floor",
                part=floor,
                pose=Pose(position_mm=(0, 0, -floor_t / 2)),
                primitives=(Box(half_size_mm=(floor_half[0], floor_half[1], floor_t / 2)),),
                density_kg_m3=700.0,
                rgba=(0.55, 0.55, 0.6, 1.0),
            ),
            Body(
                name="mover",
                part=mover,
                motion=FREE,
                pose=Pose(position_mm=(0, 0, height / 2 + GAP_MM)),
                primitives=(mover_collision,),
                density_kg_m3=2700.0,
                rgba=(0.85, 0.35, 0.2, 1.0),
            ),
        ),
        success=InsideZone(
            body="mover",
            zone=Zone(name="goal", center_mm=(goal[0], goal[1], height / 2), half_extents_mm=(*goal_half, height)),
        ),
        parameters=p,
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )
