"""Lever: a beam pivots on a fixed fulcrum, its long arm resting down at a joint stop; tip it over.

The beam hangs on a hinge about y whose range ends at the starting pose, so gravity (the long arm and
an optional load) holds it on that stop. The tilt is limited so that neither end reaches the base, and
the z/x scale limits keep that tilt above a few degrees (a long beam on a short fulcrum breaks it).
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder
from build123d import Plane, Polygon, Pos, Rot, extrude

from scenario_lib.contract import (
    FREE,
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
    "with_load": True,
    "fulcrum": "pillar",
    "handle": False,
}

RANGES = {
    "beam_length_mm": (180.0, 300.0, "mm"),
    "short_arm_fraction": (0.25, 0.4, "fraction"),
    "beam_width_mm": (20.0, 40.0, "mm"),
    "beam_thickness_mm": (8.0, 14.0, "mm"),
    "pivot_height_mm": (50.0, 80.0, "mm"),
    "tilt_deg": (8.0, 15.0, "deg"),
    "load_size_mm": (20.0, 35.0, "mm"),
    "damping_n_m_s": (0.02, 0.1, "N·m·s/rad"),
}
BASE_THICKNESS_MM = 12.0
END_CLEARANCE_MM = 2.0  # between a beam end and the base at either stop
FULCRUM_GAP_MM = 1.0  # between the beam and the fulcrum it pivots on (the hinge carries the beam)
GAP_MM = 0.05  # the load starts this far above the beam (and from its stop lip)
LIP_THICKNESS_MM = 3.0
LIP_HEIGHT_MM = 4.0


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale

    length = p["beam_length_mm"] * sx
    short_arm = p["short_arm_fraction"] * length
    long_arm = length - short_arm
    width = p["beam_width_mm"] * sy
    thickness = p["beam_thickness_mm"] * sz
    pivot_z = p["pivot_height_mm"] * sz
    # Steepest tilt at which the long end (the lower one) still clears the base.
    reach = (pivot_z - END_CLEARANCE_MM - thickness / 2) / long_arm
    tilt = min(p["tilt_deg"], math.degrees(math.asin(min(reach, 1.0))))

    # Beam frame: pivot at the origin, long arm along +x. Turning +tilt about y lowers +x.
    beam = Pos((long_arm - short_arm) / 2, 0, 0) * SolidBox(length, width, thickness)
    beam_collision = [
        Box(half_size_mm=(length / 2, width / 2, thickness / 2), pose=Pose(position_mm=((long_arm - short_arm) / 2, 0, 0)))
    ]
    pin_r = min(thickness / 3, width / 4)
    extras = []  # fused into the beam in one boolean
    if DESIGN["fulcrum"] == "yoke":
        extras.append(Rot(90, 0, 0) * SolidCylinder(pin_r, width + 2 * 6.0 * sy))
    if DESIGN["handle"]:
        grip = min(thickness * 2.0, short_arm / 2)
        extras.append(Pos(-short_arm + grip / 2, 0, thickness / 2 + grip / 2 - 0.5) * SolidBox(grip, width * 0.6, grip + 1))
        beam_collision.append(
            Box(
                half_size_mm=(grip / 2, width * 0.3, grip / 2 + 0.5),
                pose=Pose(position_mm=(-short_arm + grip / 2, 0, thickness / 2 + grip / 2 - 0.5)),
            )
        )

    if DESIGN["with_load"]:
        load_size = min(p["load_size_mm"] * math.sqrt(sx * sy), 0.4 * long_arm, 0.9 * width + 10)
        # A slender load would topple on the tilted beam: no taller than 1.5 × its footprint.
        load_height = min(p["load_size_mm"] * sz, 1.5 * load_size)
        # A stop lip just downhill of the load: on the tilted beam its soft friction contact would let it
        # creep (~1 mm/s), so it rests against the lip instead.
        lip_t, lip_h = LIP_THICKNESS_MM, min(LIP_HEIGHT_MM, 0.3 * load_height)
        load_along = long_arm - load_size / 2 - max(5.0 * sx, lip_t + 1.0)
        lip_x = load_along + load_size / 2 + GAP_MM + lip_t / 2
        lip_z = thickness / 2 + lip_h / 2 - 0.5
        extras.append(Pos(lip_x, 0, lip_z) * SolidBox(lip_t, width, lip_h + 1))
        beam_collision.append(Box(half_size_mm=(lip_t / 2, width / 2, lip_h / 2 + 0.5), pose=Pose(position_mm=(lip_x, 0, lip_z))))

    if extras:
        beam = beam.fuse(*extras)

    # Fulcrum (fixed) in world coordinates, base top at z = 0.
    sag = (thickness / 2) * (1 - math.cos(math.radians(tilt)))
    if DESIGN["fulcrum"] == "pillar":
        post_half = min(0.6 * thickness, 12.0 * sx)
        # The beam's underside dips by post_half·sin(tilt) over the post when tilted.
        top = pivot_z - thickness / 2 - post_half * math.sin(math.radians(tilt)) - sag - FULCRUM_GAP_MM
        fulcrum = Pos(0, 0, top / 2) * SolidBox(2 * post_half, width * 1.2, top)
        fulcrum_collision: tuple[Box, ...] = (
            Box(half_size_mm=(post_half, width * 0.6, top / 2), pose=Pose(position_mm=(0, 0, top / 2))),
        )
    else:
        cheek_t = 6.0 * sy
        cheek_y = width / 2 + FULCRUM_GAP_MM + cheek_t / 2
        cheek_h = pivot_z + 2 * pin_r
        cheek_w = 4 * pin_r + 4.0 * sx
        # Two cheeks on a foot plate: one U-shaped section (y-z) extruded along x, no booleans.
        outer, inner, foot = cheek_y + cheek_t / 2, cheek_y - cheek_t / 2, 4.0 * sz
        section = [(-outer, 0), (outer, 0), (outer, cheek_h), (inner, cheek_h), (inner, foot), (-inner, foot),
                   (-inner, cheek_h), (-outer, cheek_h)]
        fulcrum = extrude(Plane.YZ.offset(-cheek_w / 2) * Polygon(*section, align=None), amount=cheek_w)
        fulcrum_collision = tuple(
            Box(half_size_mm=(cheek_w / 2, cheek_t / 2, cheek_h / 2), pose=Pose(position_mm=(0, sign * cheek_y, cheek_h / 2)))
            for sign in (-1, 1)
        )

    bodies = []
    base_t = BASE_THICKNESS_MM * sz
    base_hx, base_hy = long_arm + 30 * sx, width + 60 * sy
    bodies.append(
        Body(
            name="base",
            part=SolidBox(2 * base_hx, 2 * base_hy, base_t),
            pose=Pose(position_mm=(0, 0, -base_t / 2)),
            primitives=(Box(half_size_mm=(base_hx, base_hy, base_t / 2)),),
            density_kg_m3=700.0,
            rgba=(0.55, 0.55, 0.6, 1.0),
        )
    )
    bodies.append(
        Body(name="fulcrum", part=fulcrum, primitives=fulcrum_collision, density_kg_m3=7850.0, rgba=(0.35, 0.35, 0.4, 1.0))
    )
    bodies.append(
        Body(
            name="beam",
            part=beam,
            motion=Hinge(axis=(0, 1, 0), range_deg=(-2 * tilt, 0.0), damping=p["damping_n_m_s"] * sx * sx),
            pose=Pose(position_mm=(0, 0, pivot_z), euler_deg=(0, tilt, 0)),
            primitives=tuple(beam_collision),
            density_kg_m3=700.0,
            rgba=(0.75, 0.55, 0.3, 1.0),
        )
    )
    if DESIGN["with_load"]:
        size, height, along = load_size, load_height, load_along
        up = thickness / 2 + height / 2 + GAP_MM
        angle = math.radians(tilt)
        # The load sits on the tilted beam: beam-frame (along, 0, up) turned by +tilt about y.
        position = (along * math.cos(angle) + up * math.sin(angle), 0, pivot_z - along * math.sin(angle) + up * math.cos(angle))
        bodies.append(
            Body(
                name="load",
                part=SolidBox(size, size, height),
                motion=FREE,
                pose=Pose(position_mm=position, euler_deg=(0, tilt, 0)),
                primitives=(Box(half_size_mm=(size / 2, size / 2, height / 2)),),
                density_kg_m3=7850.0,
                rgba=(0.5, 0.5, 0.55, 1.0),
            )
        )

    load_note = " lifting the steel load off its low end" if DESIGN["with_load"] else ""
    return Scenario(
        family="lever",
        objective=(
            f"Push the raised short arm of the lever down so the beam rotates {2 * tilt:.1f}° about the fulcrum to "
            f"its other stop{load_note}: the hinge must end within the last quarter of its travel."
        ),
        bodies=tuple(bodies),
        success=JointInRange(body="beam", low=-2 * tilt, high=-1.5 * tilt),
        parameters={**p, "tilt_deg": tilt},
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        # A long beam (x) on a short fulcrum (z) leaves too little tilt: limit x up and z down.
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.7), high=(1.5, 2.0, 2.0)),
    )
