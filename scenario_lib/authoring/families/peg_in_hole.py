"""Peg in hole: a peg rests on a table beside a fixed block with a row of through holes; insert it.

The holed block collides as boxes around each hole (round holes get four extra 45° boxes, making an
octagon whose flats touch the bore), so no convex decomposition is needed and the opening is never
smaller than the visual bore. The radial clearance is absolute: it does not scale.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cone as SolidCone
from build123d import Cylinder as SolidCylinder
from build123d import Pos

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
    "peg_shape": "round",
    "hole_count": 1,
    "hole_chamfer": False,
    "peg_start": "upright",
}

RANGES = {
    "peg_half_width_mm": (5.0, 10.0, "mm"),
    "peg_length_mm": (35.0, 60.0, "mm"),
    "hole_depth_mm": (15.0, 30.0, "mm"),
    "clearance_mm": (0.5, 1.0, "mm"),
    "wall_mm": (8.0, 14.0, "mm"),
    "peg_offset_mm": (15.0, 40.0, "mm"),
    "target_hole": (0.0, 1.0, "fraction"),
}
TABLE_THICKNESS_MM = 12.0
GAP_MM = 0.05  # the peg starts this far above the table: no interpenetration at t=0
TAN_22_5 = math.tan(math.radians(22.5))


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    sxy = math.sqrt(sx * sy)
    round_peg = DESIGN["peg_shape"] == "round"
    count = DESIGN["hole_count"]
    assert isinstance(count, int) and 1 <= count <= 4, "DESIGN['hole_count'] must be 1..4"
    target = min(int(p["target_hole"] * count), count - 1)

    # Peg cross-section (scaled) and hole opening (peg + absolute clearance).
    if round_peg:
        peg_hx = peg_hy = p["peg_half_width_mm"] * sxy
    else:
        peg_hx, peg_hy = p["peg_half_width_mm"] * sx, p["peg_half_width_mm"] * sy
    clearance = p["clearance_mm"]
    hole_hx, hole_hy = peg_hx + clearance, peg_hy + clearance
    length = p["peg_length_mm"] * sz
    depth = min(p["hole_depth_mm"] * sz, 0.7 * length)
    # Walls must be thicker than the octagon fillers poke out of the square opening (0.3 × opening).
    wall_x = max(p["wall_mm"] * sx, 0.7 * hole_hx)
    wall_y = max(p["wall_mm"] * sy, 0.7 * hole_hy)

    pitch = 2 * hole_hy + wall_y
    hole_ys = [(k - (count - 1) / 2) * pitch for k in range(count)]
    block_hx = hole_hx + wall_x
    block_hy = (count - 1) * pitch / 2 + hole_hy + wall_y

    # All holes (and lead-ins) are cut in one boolean: one cut per hole costs ~8 ms each.
    cutters = []
    for y in hole_ys:
        if round_peg:
            cutters.append(Pos(0, y, 0) * SolidCylinder(hole_hx, depth + 2))
        else:
            cutters.append(Pos(0, y, 0) * SolidBox(2 * hole_hx, 2 * hole_hy, depth + 2))
        if DESIGN["hole_chamfer"]:
            # A visual lead-in only: the collision opening stays the bore (the conservative side).
            chamfer = min(2.0, 0.4 * wall_x, 0.3 * depth)
            cutters.append(
                Pos(0, y, depth / 2 - chamfer / 2 + 0.01)
                * SolidCone(min(hole_hx, hole_hy), min(hole_hx, hole_hy) + chamfer + 0.02, chamfer + 0.02)
            )
    block = SolidBox(2 * block_hx, 2 * block_hy, depth).cut(*cutters)
    block_collision = _holed_block_boxes(block_hx, block_hy, hole_hx, hole_hy, hole_ys, depth, round_peg)

    # The peg's frame has its origin at the centre of its bottom face, so "the origin is in the zone"
    # means "the bottom is down in the bore": a peg lying across the opening never counts.
    axis_centre = Pose(position_mm=(0, 0, length / 2))
    if round_peg:
        peg = Pos(0, 0, length / 2) * SolidCylinder(peg_hx, length)
        peg_collision: Box | Cylinder = Cylinder(radius_mm=peg_hx, half_length_mm=length / 2, pose=axis_centre)
    else:
        peg = Pos(0, 0, length / 2) * SolidBox(2 * peg_hx, 2 * peg_hy, length)
        peg_collision = Box(half_size_mm=(peg_hx, peg_hy, length / 2), pose=axis_centre)

    offset = p["peg_offset_mm"] * sx
    if DESIGN["peg_start"] == "upright":
        peg_x = -(block_hx + offset + peg_hx)
        peg_pose = Pose(position_mm=(peg_x, 0, GAP_MM))
        reach_x = peg_x - peg_hx
    else:
        # Lying along +x from its bottom face; a round peg lies on its side (a neutral equilibrium: it
        # stays at rest).
        peg_x = -(block_hx + offset + length)
        peg_pose = Pose(position_mm=(peg_x, 0, peg_hx + GAP_MM), euler_deg=(0, 90, 0))
        reach_x = peg_x
    table_hx = -reach_x + 25 * sx
    table_hy = block_hy + 25 * sy
    table_t = TABLE_THICKNESS_MM * sz

    # Success: the peg's bottom is in the target bore, at least half the depth in (down to the table).
    z_low, z_high = -1.0, depth / 2
    zone = Zone(
        name="target_hole",
        center_mm=(0, hole_ys[target], (z_low + z_high) / 2),
        half_extents_mm=(clearance + 1.0, clearance + 1.0, (z_high - z_low) / 2),
    )
    ordinal = ["first", "second", "third", "fourth"][target]
    start = "standing upright" if DESIGN["peg_start"] == "upright" else "lying on its side"
    where = "the hole" if count == 1 else f"the {ordinal} hole (counting along +y) of {count}"
    return Scenario(
        family="peg_in_hole",
        objective=(
            f"Pick up the {DESIGN['peg_shape']} peg {start} on the table and insert it into {where} of the "
            f"fixed block, at least half the hole depth "
            f"({depth / 2:.1f} mm) deep."
        ),
        bodies=(
            Body(
                name="table",
                part=SolidBox(2 * table_hx, 2 * table_hy, table_t),
                pose=Pose(position_mm=(-table_hx + block_hx + 25 * sx, 0, -table_t / 2)),
                primitives=(Box(half_size_mm=(table_hx, table_hy, table_t / 2)),),
                density_kg_m3=700.0,
                rgba=(0.6, 0.5, 0.4, 1.0),
            ),
            Body(
                name="block",
                part=block,
                pose=Pose(position_mm=(0, 0, depth / 2)),
                primitives=block_collision,
                density_kg_m3=2700.0,
                rgba=(0.5, 0.55, 0.65, 1.0),
            ),
            Body(
                name="peg",
                part=peg,
                motion=FREE,
                pose=peg_pose,
                primitives=(peg_collision,),
                density_kg_m3=7850.0,
                rgba=(0.85, 0.6, 0.2, 1.0),
            ),
        ),
        success=InsideZone(body="peg", zone=zone),
        parameters={**p, "target_hole": float(target), "hole_depth_mm": depth / sz},
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )


def _holed_block_boxes(
    block_hx: float,
    block_hy: float,
    hole_hx: float,
    hole_hy: float,
    hole_ys: list[float],
    depth: float,
    round_holes: bool,
) -> tuple[Box, ...]:
    """Collision boxes (block frame, centred) of a block with a row of through holes along y."""
    hz = depth / 2
    side = (block_hx - hole_hx) / 2
    boxes = [
        Box(half_size_mm=(side, block_hy, hz), pose=Pose(position_mm=(sign * (hole_hx + side), 0, 0)))
        for sign in (-1, 1)
    ]
    edges = [-block_hy] + [edge for y in hole_ys for edge in (y - hole_hy, y + hole_hy)] + [block_hy]
    for low, high in zip(edges[0::2], edges[1::2]):
        boxes.append(Box(half_size_mm=(hole_hx, (high - low) / 2, hz), pose=Pose(position_mm=(0, (low + high) / 2, 0))))
    if round_holes:
        # Fill the square opening's corners so it becomes an octagon with apothem = bore radius.
        radius = hole_hx
        thickness = radius * (math.sqrt(2) - 1)
        for y in hole_ys:
            for k in range(4):
                angle = 45 + 90 * k
                distance = radius + thickness / 2
                boxes.append(
                    Box(
                        half_size_mm=(thickness / 2, radius * TAN_22_5, hz),
                        pose=Pose(
                            position_mm=(
                                distance * math.cos(math.radians(angle)),
                                y + distance * math.sin(math.radians(angle)),
                                0,
                            ),
                            euler_deg=(0, 0, angle),
                        ),
                    )
                )
    return tuple(boxes)
