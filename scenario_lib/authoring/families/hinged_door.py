"""Hinged door: a panel hangs in a fixed frame on a side or top hinge, closed at its stop; open it.

The panel clears the frame by an absolute gap on every side and turns about an axis on its opening
face at the hinge edge, so every point of it moves away from the frame as it opens. A side-hinged
door feels no gravity torque; a top-hinged flap hangs at its closed stop.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import CenterOf, Pos

from scenario_lib.contract import (
    Body,
    Box,
    Hinge,
    JointInRange,
    ParameterRange,
    Pose,
    Scenario,
    ScaleLimits,
)

# Structural choices of this script (the offline author rewrites this block per author seed).
DESIGN = {
    "hinge_side": "left",
    "handle": True,
    "panel": "solid",
}

RANGES = {
    "opening_width_mm": (150.0, 300.0, "mm"),
    "opening_height_mm": (200.0, 350.0, "mm"),
    "panel_thickness_mm": (10.0, 20.0, "mm"),
    "frame_width_mm": (25.0, 45.0, "mm"),
    "open_range_deg": (100.0, 120.0, "deg"),
    "damping_n_m_s": (0.05, 0.3, "N·m·s/rad"),
}
GAP_MM = 1.5  # between the panel and the frame on every side (absolute)
BASE_THICKNESS_MM = 15.0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    # Door plane is x-z at y = 0; it opens towards +y.
    width, height = p["opening_width_mm"] * sx, p["opening_height_mm"] * sz
    panel_t = p["panel_thickness_mm"] * sy
    frame_w = p["frame_width_mm"] * math.sqrt(sx * sz)
    frame_t = panel_t + 10.0 * sy
    panel_w, panel_h = width - 2 * GAP_MM, height - 2 * GAP_MM
    # A side-hinged panel turns about its +y edge; its back corner on the hinge side sweeps a circle of
    # radius panel_t towards the post, so the panel keeps that much more room from the hinge-side post.
    side_room = panel_t if DESIGN["hinge_side"] in ("left", "right") else 0.0
    panel_w -= side_room
    if side_room:
        # Its back corner on the free edge is sqrt(w² + t²) from the axis, a little more than w: as the
        # door starts to open, that corner swings towards the far post by the difference.
        panel_w -= math.hypot(panel_w, panel_t) - panel_w
        panel_cx_shift = (math.hypot(panel_w, panel_t) - panel_w) / 2
    else:
        panel_cx_shift = 0.0
    panel_cx = {"left": side_room / 2 - panel_cx_shift, "right": -side_room / 2 + panel_cx_shift}.get(str(DESIGN["hinge_side"]), 0.0)
    panel_cz = height / 2  # opening from z = 0 (base top) to z = height
    if DESIGN["hinge_side"] == "top":
        # A top flap may hang at its equilibrium angle (below), which lowers its far bottom edge by up
        # to sqrt(t² + h²) − h: leave that much more room above the base.
        panel_h -= math.hypot(panel_t, panel_h) - panel_h
        panel_cz = height - GAP_MM - panel_h / 2

    # Frame: two posts and a lintel, cut as one block minus the opening (one boolean, one solid).
    post_h = height + frame_w
    frame = Pos(0, 0, post_h / 2) * SolidBox(width + 2 * frame_w, frame_t, post_h)
    frame = frame - Pos(0, 0, height / 2 - 1) * SolidBox(width, frame_t + 2, height + 2)
    frame_collision = (
        Box(half_size_mm=(frame_w / 2, frame_t / 2, post_h / 2), pose=Pose(position_mm=(-(width + frame_w) / 2, 0, post_h / 2))),
        Box(half_size_mm=(frame_w / 2, frame_t / 2, post_h / 2), pose=Pose(position_mm=((width + frame_w) / 2, 0, post_h / 2))),
        Box(half_size_mm=(width / 2, frame_t / 2, frame_w / 2), pose=Pose(position_mm=(0, 0, height + frame_w / 2))),
    )

    # Panel frame: centred on the panel; the hinge axis lies on its +y face at the hinge edge.
    panel = SolidBox(panel_w, panel_t, panel_h)
    panel_collision = []
    if DESIGN["panel"] == "window":
        win_w, win_h = 0.5 * panel_w, 0.35 * panel_h
        win_z = 0.15 * panel_h
        panel = panel - Pos(0, 0, win_z) * SolidBox(win_w, panel_t + 2, win_h)
        jamb = (panel_w - win_w) / 4
        below = (panel_h / 2 + win_z - win_h / 2) / 2
        above = (panel_h / 2 - win_z - win_h / 2) / 2
        panel_collision += [
            Box(half_size_mm=(jamb, panel_t / 2, panel_h / 2), pose=Pose(position_mm=(-(panel_w / 2 - jamb), 0, 0))),
            Box(half_size_mm=(jamb, panel_t / 2, panel_h / 2), pose=Pose(position_mm=(panel_w / 2 - jamb, 0, 0))),
            Box(half_size_mm=(win_w / 2, panel_t / 2, below), pose=Pose(position_mm=(0, 0, -panel_h / 2 + below))),
            Box(half_size_mm=(win_w / 2, panel_t / 2, above), pose=Pose(position_mm=(0, 0, panel_h / 2 - above))),
        ]
    else:
        panel_collision.append(Box(half_size_mm=(panel_w / 2, panel_t / 2, panel_h / 2)))

    side = DESIGN["hinge_side"]
    if side == "left":
        anchor, axis, free_edge = (-panel_w / 2, panel_t / 2, 0.0), (0.0, 0.0, 1.0), (panel_w / 2, 0.0)
    elif side == "right":
        anchor, axis, free_edge = (panel_w / 2, panel_t / 2, 0.0), (0.0, 0.0, -1.0), (-panel_w / 2, 0.0)
    else:
        anchor, axis, free_edge = (0.0, panel_t / 2, panel_h / 2), (1.0, 0.0, 0.0), (0.0, -panel_h / 2)
    if DESIGN["handle"]:
        grip_l = 0.25 * (panel_h if side != "top" else panel_w)
        grip_s = max(12.0 * math.sqrt(sx * sz), 8.0)
        inset = 1.5 * grip_s
        grip_depth = 25.0 * sy
        if side == "top":
            hx, hz, cx, cz = grip_l / 2, grip_s / 2, 0.0, free_edge[1] + inset
        else:
            hx, hz = grip_s / 2, grip_l / 2
            cx = free_edge[0] - math.copysign(inset, free_edge[0])
            cz = 0.0
        cy = panel_t / 2 + grip_depth / 2 - 0.5
        panel = panel + Pos(cx, cy, cz) * SolidBox(2 * hx, grip_depth + 1, 2 * hz)
        panel_collision.append(Box(half_size_mm=(hx, grip_depth / 2 + 0.5, hz), pose=Pose(position_mm=(cx, cy, cz))))

    open_range = p["open_range_deg"]
    door_pose = Pose(position_mm=(panel_cx, 0, panel_cz))
    if side == "top":
        # A top flap hangs where its centre of mass is under the hinge. The axis is on the +y face (so
        # the flap swings clear of the frame), so unless a handle weighs it towards +y (and gravity
        # holds it on the closed stop), it starts at that hanging angle, turned about the hinge line.
        com = panel.center(CenterOf.MASS)
        ry, rz = com.Y - anchor[1], com.Z - anchor[2]
        hang = math.atan2(-ry, -rz) if ry < 0 else 0.0
        y, z = -anchor[1], -anchor[2]  # the panel origin relative to the hinge line
        door_pose = Pose(
            position_mm=(0, anchor[1] + y * math.cos(hang) - z * math.sin(hang), panel_cz + anchor[2] + y * math.sin(hang) + z * math.cos(hang)),
            euler_deg=(math.degrees(hang), 0, 0),
        )
    base_t = BASE_THICKNESS_MM * sz
    base_hx = width / 2 + frame_w + 40 * sx
    # The base reaches from just behind the frame to past the swing of the door's free edge.
    swing = (panel_h if side == "top" else panel_w) + 30 * sy
    behind = frame_t / 2 + 30 * sy
    base_hy, base_cy = (swing + behind) / 2, (swing - behind) / 2
    bodies = (
        Body(
            name="base",
            part=SolidBox(2 * base_hx, 2 * base_hy, base_t),
            pose=Pose(position_mm=(0, base_cy, -base_t / 2)),
            primitives=(Box(half_size_mm=(base_hx, base_hy, base_t / 2)),),
            density_kg_m3=700.0,
            rgba=(0.55, 0.55, 0.6, 1.0),
        ),
        Body(name="frame", part=frame, primitives=frame_collision, density_kg_m3=700.0, rgba=(0.45, 0.35, 0.25, 1.0)),
        Body(
            name="door",
            part=panel,
            motion=Hinge(axis=axis, anchor_mm=anchor, range_deg=(0.0, open_range), damping=p["damping_n_m_s"]),
            pose=door_pose,
            primitives=tuple(panel_collision),
            density_kg_m3=600.0,
            rgba=(0.8, 0.65, 0.45, 1.0),
        ),
    )
    what = "flap hinged along its top edge" if side == "top" else f"door hinged on its {side} side"
    return Scenario(
        family="hinged_door",
        objective=(
            f"Open the {what} outwards (towards +y) by at least 60° and hold it there; it can open up to "
            f"{open_range:.0f}°."
        ),
        bodies=bodies,
        success=JointInRange(body="door", low=60.0, high=open_range),
        parameters=p,
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )
