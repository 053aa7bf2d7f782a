"""Stacking: blocks rest apart on a table; stack them, in a given order, on a goal spot.

Each block must end inside its own zone of the goal column (all at once), so order and height count.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder

from scenario_lib.contract import (
    FREE,
    AllOf,
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
    "block_count": 3,
    "block_shape": "cube",
    "size_order": "equal",
}

RANGES = {
    "block_size_mm": (35.0, 50.0, "mm"),
    "block_height_ratio": (0.6, 1.0, "ratio"),
    "spacing_mm": (15.0, 35.0, "mm"),
    "goal_offset_mm": (60.0, 110.0, "mm"),
    "shrink_per_level": (0.0, 1.0, "fraction"),
}
TABLE_THICKNESS_MM = 12.0
GAP_MM = 0.05  # blocks start this far above the table: no interpenetration at t=0
COLOURS = ((0.85, 0.3, 0.25, 1.0), (0.25, 0.6, 0.85, 1.0), (0.95, 0.8, 0.25, 1.0), (0.4, 0.75, 0.35, 1.0))


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    sxy = math.sqrt(sx * sy)
    count = DESIGN["block_count"]
    assert isinstance(count, int) and 1 <= count <= 6, "DESIGN['block_count'] must be 1..6"
    shape = DESIGN["block_shape"]

    # Sizes from the bottom of the final stack to its top.
    levels = []
    # A pyramid shrinks per level so that the top block keeps at least 60 % of the base size (a
    # smaller top block would drop under 1 g / 5 mm at scale 0.5).
    lowest = 0.6 ** (1 / max(count - 1, 1))
    shrink = lowest + (0.88 - lowest) * p["shrink_per_level"]
    for level in range(count):
        factor = shrink**level if DESIGN["size_order"] == "pyramid" else 1.0
        size = p["block_size_mm"] * factor
        if shape == "brick":
            levels.append((1.6 * size * sx / 2, 0.8 * size * sy / 2, p["block_height_ratio"] * size * sz / 2))
        elif shape == "disc":
            radius = size * sxy / 2
            levels.append((radius, radius, p["block_height_ratio"] * size * sz / 2))
        else:
            levels.append((size * sx / 2, size * sy / 2, size * sz / 2))

    # Blocks start in a row along x, shuffled so the row order is not the stacking order.
    order = list(range(count))
    rng.shuffle(order)
    spacing = p["spacing_mm"] * sx
    row_x, x = [], 0.0
    for index in order:
        half_x = levels[index][0]
        row_x.append(x + half_x)
        x += 2 * half_x + spacing
    row_length = x - spacing
    start_x = {index: row_x[k] - row_length / 2 for k, index in enumerate(order)}
    goal_y = p["goal_offset_mm"] * sy
    widest = max(max(hx, hy) for hx, hy, _ in levels)

    bodies = []
    conditions = []
    base_z = 0.0
    for level, (hx, hy, hz) in enumerate(levels):
        name = f"block{level + 1}"
        if shape == "disc":
            part = SolidCylinder(hx, 2 * hz)
            collision: Box | Cylinder = Cylinder(radius_mm=hx, half_length_mm=hz)
        else:
            part = SolidBox(2 * hx, 2 * hy, 2 * hz)
            collision = Box(half_size_mm=(hx, hy, hz))
        bodies.append(
            Body(
                name=name,
                part=part,
                motion=FREE,
                pose=Pose(position_mm=(start_x[level], 0, hz + GAP_MM)),
                primitives=(collision,),
                density_kg_m3=2700.0,
                rgba=COLOURS[level % len(COLOURS)],
            )
        )
        # Centred over the goal spot within a third of the block's footprint, at its level ± a third.
        tolerance = min(hx, hy) / 3
        conditions.append(
            InsideZone(
                body=name,
                zone=Zone(
                    name=f"level{level + 1}",
                    center_mm=(0, goal_y, base_z + hz),
                    half_extents_mm=(tolerance, tolerance, max(2 * hz / 3, 1.0)),
                ),
            )
        )
        base_z += 2 * hz

    # A tower needs room around it, and the goal column must lie within the scene's extent.
    table_hx = max(row_length / 2 + widest + 30 * sx, 0.8 * base_z)
    table_hy = (goal_y + widest + 30 * sy + widest + 30 * sy) / 2
    table_cy = (goal_y + widest + 30 * sy - (widest + 30 * sy)) / 2
    table_t = TABLE_THICKNESS_MM * sz
    table = Body(
        name="table",
        part=SolidBox(2 * table_hx, 2 * table_hy, table_t),
        pose=Pose(position_mm=(0, table_cy, -table_t / 2)),
        primitives=(Box(half_size_mm=(table_hx, table_hy, table_t / 2)),),
        density_kg_m3=700.0,
        rgba=(0.6, 0.5, 0.4, 1.0),
    )
    names = ", ".join(f"block{level + 1}" for level in range(count))
    size_note = "largest at the bottom" if DESIGN["size_order"] == "pyramid" else "in this order from the bottom"
    return Scenario(
        family="stacking",
        objective=(
            f"Stack the {count} {shape} blocks into one tower on the goal spot {goal_y:.0f} mm along +y from "
            f"the row they start in: {names}, {size_note}."
        ),
        bodies=(table, *bodies),
        success=AllOf(conditions=tuple(conditions)),
        parameters=p,
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )
