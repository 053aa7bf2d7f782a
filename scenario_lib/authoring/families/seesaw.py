"""Seesaw: a plank pivots at its middle on a fixed triangular fulcrum; a load holds one end down.

The plank rests at the end of its hinge range with the loaded (+x) end low; an optional lighter
counterweight sits on the raised end. The task is to tip it the other way, lifting the load. Both
loads start just above the tilted plank, turned with it; the tilt stays well under the friction angle.
"""

import math
import random

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder
from build123d import Plane, Polygon, Pos, extrude

from scenario_lib.contract import (
    FREE,
    Body,
    Box,
    Cylinder,
    Hinge,
    JointInRange,
    ParameterRange,
    Pose,
    Scenario,
    ScaleLimits,
)

# Structural choices of this script (the offline author rewrites this block per author seed).
DESIGN = {
    "load_shape": "box",
    "counterweight": False,
    "seats": True,
}

RANGES = {
    "plank_length_mm": (300.0, 500.0, "mm"),
    "plank_width_mm": (40.0, 70.0, "mm"),
    "plank_thickness_mm": (8.0, 16.0, "mm"),
    "pivot_height_mm": (60.0, 100.0, "mm"),
    "tilt_deg": (8.0, 15.0, "deg"),
    "load_size_mm": (25.0, 40.0, "mm"),
    "damping_n_m_s": (0.02, 0.1, "N·m·s/rad"),
}
BASE_THICKNESS_MM = 12.0
END_CLEARANCE_MM = 2.0  # between a plank end and the base at either stop
FULCRUM_GAP_MM = 1.0  # between the plank and the fulcrum's apex (the hinge carries the plank)
GAP_MM = 0.05  # loads start this far above the plank


def build(seed: int, scale: tuple[float, float, float]) -> Scenario:
    rng = random.Random(seed)
    p = {name: rng.uniform(low, high) for name, (low, high, _) in RANGES.items()}
    sx, sy, sz = scale
    length = p["plank_length_mm"] * sx
    width = p["plank_width_mm"] * sy
    thickness = p["plank_thickness_mm"] * sz
    pivot_z = p["pivot_height_mm"] * sz
    reach = (pivot_z - END_CLEARANCE_MM - thickness / 2) / (length / 2)
    tilt = min(p["tilt_deg"], math.degrees(math.asin(min(reach, 1.0))))
    angle = math.radians(tilt)

    # Plank frame: pivot at the origin, +x towards the loaded end; turning +tilt about y lowers +x.
    plank = SolidBox(length, width, thickness)
    plank_collision = [Box(half_size_mm=(length / 2, width / 2, thickness / 2))]
    grip = max(10.0 * math.sqrt(sx * sz), 0.8 * thickness)
    grip_x = 0.25 * length
    if DESIGN["seats"]:
        grip_h = 3 * grip
        grips = [
            Pos(sign * grip_x, 0, thickness / 2 + grip_h / 2 - 0.5) * SolidBox(grip, 0.7 * width, grip_h + 1) for sign in (-1, 1)
        ]
        plank = plank.fuse(*grips)
        plank_collision += [
            Box(half_size_mm=(grip / 2, 0.35 * width, grip_h / 2 + 0.5), pose=Pose(position_mm=(sign * grip_x, 0, thickness / 2 + grip_h / 2 - 0.5)))
            for sign in (-1, 1)
        ]

    # Fulcrum: a triangular prism whose apex stays FULCRUM_GAP_MM under the plank at any tilt.
    apex = pivot_z - thickness / 2 - (thickness / 2) * (1 - math.cos(angle)) - FULCRUM_GAP_MM
    half_base = 0.6 * apex
    # Plane.XZ's normal is -y: start at y = +0.6·width and extrude one way (both=True adds a fuse).
    fulcrum = extrude(
        Plane.XZ.offset(-0.6 * width) * Polygon((-half_base, 0), (half_base, 0), (0, apex), align=None),
        amount=1.2 * width,
    )
    # Collision: two stacked boxes inside the triangle (nothing rests on the fulcrum).
    fulcrum_collision = (
        Box(half_size_mm=(0.5 * half_base, 0.6 * width, apex / 4), pose=Pose(position_mm=(0, 0, apex / 4))),
        Box(half_size_mm=(0.25 * half_base, 0.6 * width, apex / 4), pose=Pose(position_mm=(0, 0, 3 * apex / 4 - 0.5 * apex / 4))),
    )

    # Loads sit outside the grips towards the ends, turned with the plank.
    room = length / 2 - (grip_x + grip / 2 if DESIGN["seats"] else 0.2 * length) - 6.0 * sx
    size = min(p["load_size_mm"] * math.sqrt(sx * sy), room, 0.9 * width)
    # A slender load would topple on the tilted plank: keep it no taller than 1.5 × its footprint
    # (it tips only past height/size = 1/tan(tilt) ≈ 3.7 at 15°).
    height = min(p["load_size_mm"] * sz, 1.5 * size)
    along = length / 2 - size / 2 - 3.0 * sx
    up = thickness / 2 + height / 2 + GAP_MM
    # Stop lips just outside the loads at both ends: tipped, a load would slide off the end of the
    # plank (and wedge under it); held by a lip it rides along.
    lip_t, lip_h = min(2.0, 3.0 * sx - 0.1), min(4.0, 0.3 * height)
    lip_x, lip_z = along + size / 2 + GAP_MM + lip_t / 2, thickness / 2 + lip_h / 2 - 0.5
    plank = plank.fuse(*(Pos(sign * lip_x, 0, lip_z) * SolidBox(lip_t, width, lip_h + 1) for sign in (-1, 1)))
    plank_collision += [
        Box(half_size_mm=(lip_t / 2, width / 2, lip_h / 2 + 0.5), pose=Pose(position_mm=(sign * lip_x, 0, lip_z))) for sign in (-1, 1)
    ]

    def load_body(name: str, sign: int, density: float, rgba: tuple[float, float, float, float]) -> Body:
        local = (sign * along, up)
        x = local[0] * math.cos(angle) + local[1] * math.sin(angle)
        z = pivot_z - local[0] * math.sin(angle) + local[1] * math.cos(angle)
        if DESIGN["load_shape"] == "cylinder":
            part = SolidCylinder(size / 2, height)
            collision: Box | Cylinder = Cylinder(radius_mm=size / 2, half_length_mm=height / 2)
        else:
            part = SolidBox(size, size, height)
            collision = Box(half_size_mm=(size / 2, size / 2, height / 2))
        return Body(
            name=name,
            part=part,
            motion=FREE,
            pose=Pose(position_mm=(x, 0, z), euler_deg=(0, tilt, 0)),
            primitives=(collision,),
            density_kg_m3=density,
            rgba=rgba,
        )

    base_t = BASE_THICKNESS_MM * sz
    base_hx, base_hy = length / 2 + 40 * sx, width + 40 * sy
    bodies = [
        Body(
            name="base",
            part=SolidBox(2 * base_hx, 2 * base_hy, base_t),
            pose=Pose(position_mm=(0, 0, -base_t / 2)),
            primitives=(Box(half_size_mm=(base_hx, base_hy, base_t / 2)),),
            density_kg_m3=700.0,
            rgba=(0.5, 0.6, 0.45, 1.0),
        ),
        Body(name="fulcrum", part=fulcrum, primitives=fulcrum_collision, density_kg_m3=2700.0, rgba=(0.4, 0.4, 0.45, 1.0)),
        Body(
            name="plank",
            part=plank,
            motion=Hinge(axis=(0, 1, 0), range_deg=(-2 * tilt, 0.0), damping=p["damping_n_m_s"] * sx * sx),
            pose=Pose(position_mm=(0, 0, pivot_z), euler_deg=(0, tilt, 0)),
            primitives=tuple(plank_collision),
            density_kg_m3=700.0,
            rgba=(0.8, 0.6, 0.35, 1.0),
        ),
        load_body("load", 1, 7850.0, (0.45, 0.45, 0.5, 1.0)),
    ]
    if DESIGN["counterweight"]:
        # Aluminium, so about a third of the steel load: the loaded end stays down.
        bodies.append(load_body("counterweight", -1, 2700.0, (0.75, 0.75, 0.8, 1.0)))
    extra = " (the lighter counterweight on the raised end must stay on the plank)" if DESIGN["counterweight"] else ""
    return Scenario(
        family="seesaw",
        objective=(
            f"Tip the seesaw so the end carrying the steel {DESIGN['load_shape']} load rises and the plank turns "
            f"{2 * tilt:.1f}° to its other stop{extra}: the hinge must end within the last quarter of its travel."
        ),
        bodies=tuple(bodies),
        success=JointInRange(body="plank", low=-2 * tilt, high=-1.5 * tilt),
        parameters={**p, "tilt_deg": tilt},
        parameter_ranges=tuple(
            ParameterRange(name=name, low=low, high=high, unit=unit) for name, (low, high, unit) in RANGES.items()
        ),
        # A long plank (x) on a low fulcrum (z) leaves too little tilt: limit x up and z down.
        scale_limits=ScaleLimits(low=(0.5, 0.5, 0.7), high=(1.5, 2.0, 2.0)),
    )
