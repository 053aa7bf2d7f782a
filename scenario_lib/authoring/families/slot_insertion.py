"""Slot insertion: a flat tab lies on a table beside a fixed holder with a row of slots; stand it in one.

The holder collides as boxes (end walls, walls between slots and, for blind slots, a floor slab); the
slot is wider than the tab by an absolute clearance on every side, whatever the scale.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Pos

from scenario_lib.contract import (
    FREE,
    Body,
    Box,
    InsideZone,
    ParameterRange,
    Pose,
    Scenario,
    ScaleLimits,
    Zone,
)

# Structural choices of this script (the offline author rewrites this block per author seed).
DESIGN = {
    "slot_count": 2,
    "slot_style": "blind",
    "tab_shape": "plain",
}

RANGES = {
    "tab_thickness_mm": (4.0, 8.0, "mm"),
    "tab_width_mm": (20.0, 40.0, "mm"),
    "slot_depth_mm": (15.0, 30.0, "mm"),
    "clearance_mm": (0.5, 1.0, "mm"),
    "wall_mm": (8.0, 14.0, "mm"),
    "floor_mm": (6.0, 12.0, "mm"),
    "tab_offset_mm": (15.0, 40.0, "mm"),
    "target_slot": (0.0, 1.0, "fraction"),
}
TABLE_THICKNESS_MM = 12.0
GAP_MM = 0.05  # the tab starts this far above the table: no interpenetration at t=0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    count = DESIGN["slot_count"]
    assert isinstance(count, int) and 1 <= count <= 4, "DESIGN['slot_count'] must be 1..4"
    target = min(int(p["target_slot"] * count), count - 1)
    blind = DESIGN["slot_style"] == "blind"

    # Tab frame: thickness along x, width along y, height along z (as it stands once inserted).
    thickness = p["tab_thickness_mm"] * sx
    width = p["tab_width_mm"] * sy
    depth = p["slot_depth_mm"] * sz
    clearance = p["clearance_mm"]
    slot_hx, slot_hy = thickness / 2 + clearance, width / 2 + clearance
    wall_x, wall_y = p["wall_mm"] * sx, p["wall_mm"] * sy
    floor = p["floor_mm"] * sz if blind else 0.0
    height = depth + floor

    pitch = 2 * slot_hx + wall_x
    slot_xs = [(k - (count - 1) / 2) * pitch for k in range(count)]
    holder_hx = (count - 1) * pitch / 2 + slot_hx + wall_x
    holder_hy = slot_hy + wall_y
    # Cut 1 mm past the top so the faces do not coincide; blind slots stop at the floor. One boolean
    # for all slots (one per slot costs ~8 ms each).
    cut = depth + 1 if blind else height + 2
    holder = SolidBox(2 * holder_hx, 2 * holder_hy, height).cut(
        *[Pos(x, 0, height / 2 - cut / 2 + 1) * SolidBox(2 * slot_hx, 2 * slot_hy, cut) for x in slot_xs]
    )
    holder_collision = _slotted_holder_boxes(holder_hx, holder_hy, slot_hx, slot_hy, slot_xs, height, floor)

    if DESIGN["tab_shape"] == "t_handle":
        # The handle is wider than the slot, so it lands on the holder before the blade bottoms out.
        blade = 0.8 * depth
        handle_w, handle_h = width + 2 * clearance + 0.6 * wall_y, max(8.0 * sz, 0.25 * blade)
        tab = SolidBox(thickness, width, blade) + Pos(0, 0, blade / 2 + handle_h / 2 - 0.5) * SolidBox(
            thickness, handle_w, handle_h + 1.0
        )
        tab_collision: tuple[Box, ...] = (
            Box(half_size_mm=(thickness / 2, width / 2, blade / 2)),
            Box(
                half_size_mm=(thickness / 2, handle_w / 2, handle_h / 2 + 0.5),
                pose=Pose(position_mm=(0, 0, blade / 2 + handle_h / 2 - 0.5)),
            ),
        )
        tab_extent = blade / 2 + handle_h
    else:
        blade = max(1.4 * depth, 30.0 * sz)
        tab = SolidBox(thickness, width, blade)
        tab_collision = (Box(half_size_mm=(thickness / 2, width / 2, blade / 2)),)
        tab_extent = blade / 2

    # The tab lies flat (rotated +90° about y: its z axis along world +x, thickness vertical).
    offset = p["tab_offset_mm"] * sx
    tab_x = -(holder_hx + offset + tab_extent)
    tab_pose = Pose(position_mm=(tab_x, 0, thickness / 2 + GAP_MM), euler_deg=(0, 90, 0))
    reach_x = tab_x - blade / 2
    table_hx = (-reach_x + holder_hx) / 2 + 25 * sx
    table_cx = (reach_x + holder_hx) / 2
    table_hy = max(holder_hy, width) + 25 * sy
    table_t = TABLE_THICKNESS_MM * sz

    # Success: the tab's origin (blade centre) is over the target slot, blade at least half the depth in.
    bottom = floor if blind else 0.0
    z_low, z_high = bottom + blade / 2 - 1.0, height - depth / 2 + blade / 2
    zone = Zone(
        name="target_slot",
        center_mm=(slot_xs[target], 0, (z_low + z_high) / 2),
        half_extents_mm=(clearance + 1.0, clearance + 1.0, (z_high - z_low) / 2),
    )
    where = "the slot" if count == 1 else f"slot {target + 1} of {count} (counting along +x)"
    return Scenario(
        family="slot_insertion",
        objective=(
            f"Pick up the flat {'T-handled ' if DESIGN['tab_shape'] == 't_handle' else ''}tab lying on the table, "
            f"stand it upright and insert it into {where} of the fixed holder, at least half the slot depth "
            f"({depth / 2:.1f} mm) deep."
        ),
        bodies=(
            Body(
                name="table",
                part=SolidBox(2 * table_hx, 2 * table_hy, table_t),
                pose=Pose(position_mm=(table_cx, 0, -table_t / 2)),
                primitives=(Box(half_size_mm=(table_hx, table_hy, table_t / 2)),),
                density_kg_m3=700.0,
                rgba=(0.6, 0.5, 0.4, 1.0),
            ),
            Body(
                name="holder",
                part=holder,
                pose=Pose(position_mm=(0, 0, height / 2)),
                primitives=holder_collision,
                density_kg_m3=2700.0,
                rgba=(0.45, 0.55, 0.65, 1.0),
            ),
            Body(
                name="tab",
                part=tab,
                motion=FREE,
                pose=tab_pose,
                primitives=tab_collision,
                density_kg_m3=7850.0,
                rgba=(0.8, 0.3, 0.3, 1.0),
            ),
        ),
        success=InsideZone(body="tab", zone=zone),
        parameters={**p, "target_slot": float(target)},
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )


def _slotted_holder_boxes(
    holder_hx: float,
    holder_hy: float,
    slot_hx: float,
    slot_hy: float,
    slot_xs: list[float],
    height: float,
    floor: float,
) -> tuple[Box, ...]:
    """Collision boxes (holder frame, centred) of a holder with a row of slots along x."""
    hz = height / 2
    end = (holder_hy - slot_hy) / 2
    boxes = [
        Box(half_size_mm=(holder_hx, end, hz), pose=Pose(position_mm=(0, sign * (slot_hy + end), 0)))
        for sign in (-1, 1)
    ]
    edges = [-holder_hx] + [edge for x in slot_xs for edge in (x - slot_hx, x + slot_hx)] + [holder_hx]
    for low, high in zip(edges[0::2], edges[1::2]):
        boxes.append(Box(half_size_mm=((high - low) / 2, slot_hy, hz), pose=Pose(position_mm=((low + high) / 2, 0, 0))))
    if floor > 0:
        boxes.append(Box(half_size_mm=(holder_hx, slot_hy, floor / 2), pose=Pose(position_mm=(0, 0, -hz + floor / 2))))
    return tuple(boxes)
