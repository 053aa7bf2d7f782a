"""Slider: a carriage rides a fixed rail on a slide joint, resting at the start stop; push it along.

The carriage wraps the rail with an absolute gap on every side (the joint carries it, so nothing
touches at rest). On a ramp the rail rises towards the far end and gravity holds the carriage at the
low stop; on a flat rail it simply rests there.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder
from build123d import Plane, Polygon, Pos, extrude

from scenario_lib.contract import (
    Body,
    Box,
    JointInRange,
    ParameterRange,
    Pose,
    Scenario,
    ScaleLimits,
    Slide,
)

# Structural choices of this script (the offline author rewrites this block per author seed).
DESIGN = {
    "rail": "flat",
    "carriage": "saddle",
    "knob": True,
}

RANGES = {
    "rail_length_mm": (250.0, 450.0, "mm"),
    "rail_width_mm": (15.0, 30.0, "mm"),
    "rail_height_mm": (15.0, 30.0, "mm"),
    "carriage_length_mm": (40.0, 70.0, "mm"),
    "wall_mm": (5.0, 10.0, "mm"),
    "rail_clearance_mm": (40.0, 70.0, "mm"),
    "ramp_deg": (8.0, 20.0, "deg"),
    "damping_n_s_m": (2.0, 8.0, "N·s/m"),
}
GAP_MM = 1.0  # between carriage and rail on every side (absolute)
BASE_THICKNESS_MM = 12.0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    ramp = p["ramp_deg"] if DESIGN["rail"] == "ramp" else 0.0
    length = p["rail_length_mm"] * sx
    rail_w, rail_h = p["rail_width_mm"] * sy, p["rail_height_mm"] * sz
    car_l = p["carriage_length_mm"] * sx
    wall = p["wall_mm"] * math.sqrt(sy * sz)
    stop_l = 10.0 * sx
    travel = length - car_l - 2 * stop_l - 2 * GAP_MM
    lift = p["rail_clearance_mm"] * sz  # height of the rail's low end above the base

    # The rail body's frame is the world frame. Its side outline (x-z) is one polygon: the bar, an end
    # stop rising above it at each end and an upright leg under each end down to the base (z = 0),
    # extruded across the rail width: no booleans, so it builds in about a millisecond.
    angle = math.radians(ramp)
    centre_z = lift + (length / 2) * math.sin(angle) + (rail_h / 2) * math.cos(angle)
    u, n = (math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle))
    stop_h = rail_h + 2 * wall + 2 * GAP_MM

    def at(along: float, across: float) -> tuple[float, float]:
        return (along * u[0] + across * n[0], centre_z + along * u[1] + across * n[1])

    half_l, half_h, inner, top = length / 2, rail_h / 2, length / 2 - stop_l, stop_h - rail_h / 2
    outline = [
        (at(-half_l, -half_h)[0], 0.0),
        (at(-inner, -half_h)[0], 0.0),
        at(-inner, -half_h),
        at(inner, -half_h),
        (at(inner, -half_h)[0], 0.0),
        (at(half_l, -half_h)[0], 0.0),
        at(half_l, -half_h),
        at(half_l, top),
        at(inner, top),
        at(inner, half_h),
        at(-inner, half_h),
        at(-inner, top),
        at(-half_l, top),
        at(-half_l, -half_h),
    ]
    # Plane.XZ's normal is -y: start at y = +w/2 and extrude one way (both=True would add a fuse).
    rail = extrude(Plane.XZ.offset(-rail_w / 2) * Polygon(*outline, align=None), amount=rail_w)
    tilt = (0, -ramp, 0)  # turning by -ramp about y raises +x
    rail_collision = [Box(half_size_mm=(half_l, rail_w / 2, half_h), pose=Pose(position_mm=(0, 0, centre_z), euler_deg=tilt))]
    for sign in (-1, 1):
        stop_centre = at(sign * (half_l - stop_l / 2), (top - half_h) / 2)
        rail_collision.append(
            Box(half_size_mm=(stop_l / 2, rail_w / 2, (top + half_h) / 2), pose=Pose(position_mm=(stop_centre[0], 0, stop_centre[1]), euler_deg=tilt))
        )
        x_low, x_high = sorted((at(sign * inner, -half_h)[0], at(sign * half_l, -half_h)[0]))
        leg_top = min(at(sign * inner, -half_h)[1], at(sign * half_l, -half_h)[1])
        rail_collision.append(
            Box(half_size_mm=((x_high - x_low) / 2, rail_w / 2, leg_top / 2), pose=Pose(position_mm=((x_low + x_high) / 2, 0, leg_top / 2)))
        )

    # Carriage frame: on the rail axis, tilted with it; a U-section (profile in y-z, extruded along x)
    # wraps the rail top and sides with GAP_MM.
    inner_w, top_z = rail_w + 2 * GAP_MM, rail_h / 2 + GAP_MM
    skirt = 0.6 * rail_h if DESIGN["carriage"] == "saddle" else 0.3 * rail_h
    top_t = wall if DESIGN["carriage"] == "saddle" else 2.5 * wall
    outer_w = inner_w + 2 * wall
    low_z, high_z = top_z - skirt, top_z + top_t
    section = [
        (-outer_w / 2, low_z),
        (-inner_w / 2, low_z),
        (-inner_w / 2, top_z),
        (inner_w / 2, top_z),
        (inner_w / 2, low_z),
        (outer_w / 2, low_z),
        (outer_w / 2, high_z),
        (-outer_w / 2, high_z),
    ]
    carriage = extrude(Plane.YZ.offset(-car_l / 2) * Polygon(*section, align=None), amount=car_l)
    car_collision = [Box(half_size_mm=(car_l / 2, outer_w / 2, top_t / 2), pose=Pose(position_mm=(0, 0, top_z + top_t / 2)))]
    for sign in (-1, 1):
        y = sign * (inner_w / 2 + wall / 2)
        car_collision.append(
            Box(half_size_mm=(car_l / 2, wall / 2, skirt / 2), pose=Pose(position_mm=(0, y, top_z - skirt / 2)))
        )
    if DESIGN["knob"]:
        knob_r, knob_h = 0.3 * min(car_l, outer_w), 1.2 * min(car_l, outer_w) * sz / math.sqrt(sx * sy)
        knob_h = max(min(knob_h, 60.0 * sz), 10.0 * sz)
        knob_z = top_z + top_t + knob_h / 2 - 0.5
        carriage = carriage + Pos(0, 0, knob_z) * SolidCylinder(knob_r, knob_h + 1)
        car_collision.append(Box(half_size_mm=(knob_r * 0.7, knob_r * 0.7, knob_h / 2 + 0.5), pose=Pose(position_mm=(0, 0, knob_z))))

    start_x = -length / 2 + stop_l + GAP_MM + car_l / 2
    car_world = (start_x * math.cos(angle), 0, centre_z + start_x * math.sin(angle))
    base_t = BASE_THICKNESS_MM * sz
    base_hx, base_hy = length / 2 + 30 * sx, outer_w + 40 * sy
    bodies = (
        Body(
            name="base",
            part=SolidBox(2 * base_hx, 2 * base_hy, base_t),
            pose=Pose(position_mm=(0, 0, -base_t / 2)),
            primitives=(Box(half_size_mm=(base_hx, base_hy, base_t / 2)),),
            density_kg_m3=700.0,
            rgba=(0.55, 0.55, 0.6, 1.0),
        ),
        Body(
            name="rail",
            part=rail,
            primitives=tuple(rail_collision),
            density_kg_m3=7850.0,
            rgba=(0.6, 0.62, 0.66, 1.0),
        ),
        Body(
            name="carriage",
            part=carriage,
            motion=Slide(axis=(1, 0, 0), range_mm=(0.0, travel), damping=p["damping_n_s_m"]),
            pose=Pose(position_mm=car_world, euler_deg=(0, -ramp, 0)),
            primitives=tuple(car_collision),
            density_kg_m3=2700.0,
            rgba=(0.2, 0.45, 0.8, 1.0),
        ),
    )
    slope = f"up the {ramp:.0f}° ramp " if ramp else ""
    return Scenario(
        family="slider",
        objective=(
            f"Push the carriage {slope}along its rail to the far end: it must travel at least "
            f"{0.85 * travel:.0f} mm of its {travel:.0f} mm stroke."
        ),
        bodies=bodies,
        success=JointInRange(body="carriage", low=0.85 * travel, high=travel),
        parameters=p,
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.5), high=(2.0, 2.0, 2.0)),
    )
