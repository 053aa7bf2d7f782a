"""What every agent prompt carries about the script contract, generated from the code itself.

`contract_reference` walks the pydantic models of `scenario_lib.contract` (every class, field, type,
unit and default), so the reference a model reads can never drift from what the validator accepts;
`stage_rules` quotes the validator's own thresholds; `tool_versions` the installed versions. The
units-and-frames table and the import convention are the contract's fixed conventions.
"""

from __future__ import annotations

import inspect
from enum import Enum
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# Field-name suffixes and the unit they carry (the contract names every quantity with its unit).
_UNIT_SUFFIXES = (
    ("_kg_m3", "kg/m³"),
    ("_mm", "mm"),
    ("_deg", "degrees"),
    ("_s", "seconds"),
)

UNITS_AND_FRAMES = """\
## Units and frames
| quantity | unit |
|---|---|
| lengths, positions, primitive sizes, slide joint values, zones | millimetres (fields end in _mm) |
| angles: euler_deg, hinge range_deg, JointInRange on a hinge | degrees (fields end in _deg) |
| density_kg_m3 | kg/m³ (steel 7850, aluminium 2700, plastic 1200, wood 600–700) |
| hinge damping / slide damping | N·m·s/rad / N·s/m |
| timestep_s | seconds (keep the default 0.002) |
- World: z up, gravity −9.81 m/s² along z. There is NO ground plane: model a floor, table or slab as a FIXED body.
- Each body's build123d `part` is modelled in the body frame; `Body.pose` places that frame in the world
  (position_mm, then euler_deg as MuJoCo's intrinsic x-y-z rotation). build123d primitives are centred on
  their origin: a 40 mm cube resting on a table whose top is at z = 0 has position_mm=(x, y, 20.05).
- Collision primitives, joint axes and anchors are in the body frame. A body with a `parent` is still posed
  in world coordinates. Zones are axis-aligned boxes in the world frame.
- InsideZone tests the body frame ORIGIN, not its centre of mass: put the origin where "in place" is easy to state.
- Joint values are measured from the declared pose (0 at t=0): range_deg=(0, 110) means closed at the start."""

IMPORT_CONVENTION = """\
## Imports
Import only `random`, `math`, `build123d` and `scenario_lib.contract`. Both build123d and the contract define
Box, Cylinder and Sphere: the contract's are collision primitives (keyword arguments, half sizes in mm), so
import build123d's solids under other names, as every accepted script does:
```python
from build123d import Box as SolidBox, Cylinder as SolidCylinder, Pos, Rot
from scenario_lib.contract import FIXED, FREE, Body, Box, Cylinder, Hinge, InsideZone, Pose, Scenario, Zone
```
build123d solids: SolidBox(length_x, width_y, height_z) and SolidCylinder(radius, height) are centred;
move with Pos(x, y, z) * part, turn with Rot(x_deg, y_deg, z_deg) * part, cut with part.cut(*tools) or
part - tool, fuse with part.fuse(*others) or part + other. `part.is_valid` is a property, not a method.
Contract models are frozen pydantic models: keyword arguments only, unknown fields are refused."""


def _unit_of(name: str) -> str:
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


def _type_text(field: Any) -> str:
    from scenario_lib.contract import _type_name

    text = _type_name(field.annotation)
    constraints = []
    for item in field.metadata:
        for attribute, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(item, attribute, None) is not None:
                constraints.append(f"{symbol} {getattr(item, attribute)}")
        if getattr(item, "pattern", None):
            constraints.append(f"matching {item.pattern}")
        if getattr(item, "min_length", None):
            constraints.append(f"at least {item.min_length} long")
    return text + (f" ({', '.join(constraints)})" if constraints else "")


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, Enum):
        return f"default {type(default).__name__}.{default.name}"
    if isinstance(default, BaseModel):
        named = {"Fixed": "FIXED", "Free": "FREE"}.get(type(default).__name__)
        return f"default {named or type(default).__name__ + '()'}"
    return f"default {default!r}"


def _model_section(model: type[BaseModel]) -> str:
    from scenario_lib.contract import public_fields

    doc = inspect.getdoc(model) or ""
    lines = [f"### {model.__name__}", doc.split("\n\n")[0].replace("\n", " ")]
    fields = public_fields(model)
    if not fields:
        lines.append("(no fields)")
    for name in fields:
        field = model.model_fields[name]
        unit = _unit_of(name)
        note = f" [{unit}]" if unit else ""
        if name == "part":
            type_text, default = "build123d solid (Part/Solid), excluded from JSON", "required in practice"
        else:
            type_text, default = _type_text(field), _default_text(field)
        lines.append(f"- {model.__name__}.{name}: {type_text}{note}, {default}")
    kind = model.model_fields.get("kind")
    if kind is not None and kind.default is not PydanticUndefined:
        lines.append(f"  (its `kind` is {kind.default!r}, set by the class: never pass it)")
    return "\n".join(lines)


@cache
def contract_reference() -> str:
    """The API reference of `scenario_lib.contract`, generated from its models (every field, type, unit, default)."""
    from scenario_lib import contract

    models: list[type[BaseModel]] = [contract.Pose, contract.Body, contract.Fixed, contract.Free, contract.Hinge, contract.Slide]
    models += [contract.Box, contract.Cylinder, contract.Sphere, contract.Zone]
    models += [contract.InsideZone, contract.JointInRange, contract.AllOf]
    models += [contract.ParameterRange, contract.ScaleLimits, contract.Scenario]
    # Any contract model not listed above (added later) still appears, after the rest.
    models += [m for m in contract._all_models() if m not in models]
    collision = ", ".join(f"Collision.{member.name}" for member in contract.Collision)
    header = (
        "## The contract: scenario_lib.contract (generated from the code)\n"
        "Keyword arguments only; unknown fields are refused; every model is frozen. Constants: FIXED = Fixed(), "
        f"FREE = Free() (use them as Body.motion). Collision is an Enum: {collision}."
    )
    return "\n\n".join([header, *(_model_section(model) for model in models)])


def stage_rules() -> str:
    """The rules of every validation stage, with the validator's own thresholds."""
    from scenario_lib.scene.limits import DEFAULT_THRESHOLDS as T
    from scenario_lib.scene.limits import (
        MAX_BODY_EXTENT_M,
        MAX_MOVING_MASS_KG,
        MAX_TIMESTEP_S,
        MIN_BODY_EXTENT_M,
        MIN_MOVING_MASS_KG,
        ZONE_REACH_MARGIN,
    )

    return f"""\
## What the validator checks, per (seed, scale); the first failing stage ends that seed
1. code: the script imports, defines build(seed, scale), returns a valid Scenario (finite numbers, unique body
   names, every body with a build123d solid) within the sandbox's CPU, memory and time limits. The same
   (seed, scale) must give the same scenario: draw everything from random.Random(seed), never the clock.
2. geometry: each part is one non-empty, valid solid with volume, not self-intersecting; its mesh is watertight
   and manifold. Fuse touching parts with ~1 mm overlap; a compound of separate solids is not one part.
3. mjcf: the scene compiles in MuJoCo; a HULL body must be convex; something can move; timestep in
   (0, {MAX_TIMESTEP_S:g}] s; moving masses {MIN_MOVING_MASS_KG * 1000:g} g – {MAX_MOVING_MASS_KG:g} kg; every body
   {MIN_BODY_EXTENT_M * 1000:g} mm – {MAX_BODY_EXTENT_M:g} m across. A holed part must not collide as one box or hull:
   give primitives around the opening (the opening never smaller than the visual one).
4. stability: 1 s of passive simulation: no NaN, no MuJoCo warnings, speed ≤ {T.max_linear_speed_m_s:g} m/s,
   angular speed ≤ {T.max_angular_speed_rad_s:g} rad/s, energy gain ≤ {T.max_energy_gain_fraction:.0%} of m·g·extent,
   penetration ≤ {T.max_penetration_initial_mm:g} mm at t=0, ≤ {T.max_penetration_settling_mm:g} mm after
   {T.settling_time_s * 1000:g} ms, ≤ {T.max_penetration_rest_mm:g} mm over the last {T.rest_window_s:g} s; and AT REST: after
   {T.contact_settling_s:g} s no movable body is more than {T.max_drift_mm:g} mm or {T.max_drift_deg:g}° from its declared pose,
   measured relative to the body it rests on (nothing drops, slides, creeps, tips or swings). So: free bodies start
   0.05–0.1 mm above their support, jointed bodies rest at a stop or a gravity-neutral pose, and every body is
   supported under its centre of mass.
5. task: the success condition names real bodies with the right motion (InsideZone: a FREE body; JointInRange:
   a Hinge or Slide body, its [low, high] overlapping the joint range); zones lie within the scene (at most
   {ZONE_REACH_MARGIN:.0%} of its size beyond the bodies); the condition does NOT hold at t=0.
6. solvability: left alone, the scene must not reach success nor end within 1 mm (or 1°) of it; and a physical
   demonstration must reach success: an abstract hand with bounded force, torque and speed grasps the body, lifts it
   clear of everything, carries it above the zone turning it to an axis-aligned orientation that fits, lowers it
   into the zone and releases it (it must stay there); a jointed body is driven to the middle of its JointInRange.
   So: openings wider than the part they take (absolute clearance), zones inside the opening, joints whose path to
   the goal is free, success conditions a careful hand can reach.
The harness draws several seeds and per-axis scales within your ScaleLimits (and 0.5–2.0): scale parameters
(x by sx, y by sy, z by sz; round features by sqrt(sx*sy)), keep clearances absolute (hole = peg × scale +
0.5–1.0 mm), and shrink ScaleLimits on axes where your design breaks."""


@cache
def tool_versions() -> str:
    """The versions of the tools a script runs against (those every validation report records)."""
    import platform

    from scenario_lib.validation.pipeline import library_versions

    labels = {"build123d": "build123d", "cadquery-ocp": "OCP", "mujoco": "MuJoCo"}
    versions = [f"Python {platform.python_version()}"]
    versions += [f"{labels[key]} {value}" for key, value in library_versions().items() if key in labels]
    return "## Tool versions\n" + ", ".join(versions)


def reference_sections() -> str:
    """Everything static a prompt carries: contract reference, units and frames, imports, stage rules, versions."""
    return "\n\n".join([contract_reference(), UNITS_AND_FRAMES, IMPORT_CONVENTION, stage_rules(), tool_versions()])
