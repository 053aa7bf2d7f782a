"""The scenario script contract: the small API a scenario script builds its scene with.

A scenario script is a plain Python file that defines::

    def build(seed: int, scale: tuple[float, float, float]) -> Scenario: ...

It draws its parameters from ``random.Random(seed)``, multiplies them by ``scale`` (per axis, x/y/z)
within its declared `ScaleLimits`, models each body as a build123d part in millimetres in the body's
own frame, and returns a `Scenario`. Clearances stay absolute: scale sizes, not gaps.

These models cross the sandbox boundary as JSON (the build123d ``part`` stays behind and travels as an
STL mesh named after its body), so they are pydantic models, frozen, with every number checked finite.
See ``docs/scenario-contract.md`` for the full guide and one example per tier.
"""

from __future__ import annotations

import difflib
import math
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

CONTRACT_VERSION = 1


def _require_finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


# Lengths, angles, sizes and densities are bounded well beyond any real scene (1e9 mm is 1000 km), so
# the arithmetic on them (poses, camera framing, MJCF in metres) cannot overflow to inf or NaN.
MAX_MAGNITUDE = 1e9


def _require_plausible(value: float) -> float:
    _require_finite(value)
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"expected a number within ±{MAX_MAGNITUDE:g} (mm, degrees, kg/m³), got {value!r}")
    return value


Finite = Annotated[float, AfterValidator(_require_finite)]
Bounded = Annotated[float, AfterValidator(_require_plausible)]
Positive = Annotated[float, AfterValidator(_require_plausible), Field(gt=0)]
Vec3 = tuple[Bounded, Bounded, Bounded]
PositiveVec3 = tuple[Positive, Positive, Positive]
BodyName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$")]


@dataclass(frozen=True)
class ContractError:
    """One invalid contract object a script tried to make: what was wrong, and where in the script."""

    model: str
    problems: tuple[str, ...]
    stack: tuple[tuple[str, int, str], ...]  # (file, line number, source line), outermost first


_COLLECTED: ContextVar[list[ContractError] | None] = ContextVar("scenario_contract_errors", default=None)


@contextmanager
def collecting_contract_errors() -> Iterator[list[ContractError]]:
    """Record invalid contract objects instead of raising, so one build reports every mistake.

    Inside, a model given wrong fields is recorded as a `ContractError` and built from its valid
    fields (defaults for the rest), and the script carries on to its next mistake. The sandbox runs
    builds this way; the list it yields holds what was recorded.
    """
    collected: list[ContractError] = []
    token = _COLLECTED.set(collected)
    try:
        yield collected
    finally:
        _COLLECTED.reset(token)


class _Frozen(BaseModel):
    """Frozen, keyword-only, extra fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, *args: Any, **data: Any) -> None:
        if args:
            raise TypeError(keyword_only_message(type(self)))
        try:
            super().__init__(**data)
        except ValidationError as err:
            collected = _COLLECTED.get()
            if collected is None:
                raise
            stack = tuple((frame.filename, frame.lineno or 0, (frame.line or "").strip()) for frame in traceback.extract_stack()[:-1])
            collected.append(ContractError(type(self).__name__, tuple(describe_validation_error(err, type(self))), stack))
            bad = {error["loc"][0] for error in err.errors() if error["loc"]}
            placeholder = type(self).model_construct(**{k: v for k, v in data.items() if k in type(self).model_fields and k not in bad})
            for slot in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
                object.__setattr__(self, slot, getattr(placeholder, slot))


class Pose(_Frozen):
    """A rigid placement: position in mm and MuJoCo's default intrinsic xyz Euler angles in degrees."""

    position_mm: Vec3 = (0.0, 0.0, 0.0)
    euler_deg: Vec3 = (0.0, 0.0, 0.0)


class Fixed(_Frozen):
    """The body is welded to the world (or to its parent)."""

    kind: Literal["fixed"] = "fixed"


class Free(_Frozen):
    """The body moves freely under gravity and contact (a MuJoCo free joint)."""

    kind: Literal["free"] = "free"


class Hinge(_Frozen):
    """A revolute joint about ``axis`` through ``anchor_mm``, both in the body frame."""

    kind: Literal["hinge"] = "hinge"
    axis: Vec3
    anchor_mm: Vec3 = (0.0, 0.0, 0.0)
    range_deg: tuple[Finite, Finite] | None = None
    damping: Annotated[Finite, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> Hinge:
        _check_axis(self.axis)
        _check_range(self.range_deg)
        return self


class Slide(_Frozen):
    """A prismatic joint along ``axis`` (body frame)."""

    kind: Literal["slide"] = "slide"
    axis: Vec3
    range_mm: tuple[Finite, Finite] | None = None
    damping: Annotated[Finite, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> Slide:
        _check_axis(self.axis)
        _check_range(self.range_mm)
        return self


def _check_axis(axis: tuple[float, float, float]) -> None:
    if math.hypot(*axis) < 1e-9:
        raise ValueError(f"joint axis {axis} has zero length; give a direction such as (0, 0, 1)")


def _check_range(value_range: tuple[float, float] | None) -> None:
    if value_range is not None and value_range[0] >= value_range[1]:
        raise ValueError(f"joint range {value_range} must be (low, high) with low < high")


Motion = Annotated[Union[Fixed, Free, Hinge, Slide], Field(discriminator="kind")]
FIXED = Fixed()
FREE = Free()


class Box(_Frozen):
    """A collision box given by half sizes (mm), placed in the body frame."""

    kind: Literal["box"] = "box"
    half_size_mm: PositiveVec3
    pose: Pose = Pose()


class Cylinder(_Frozen):
    """A collision cylinder along the local z axis, placed in the body frame."""

    kind: Literal["cylinder"] = "cylinder"
    radius_mm: Positive
    half_length_mm: Positive
    pose: Pose = Pose()


class Sphere(_Frozen):
    """A collision sphere, placed in the body frame."""

    kind: Literal["sphere"] = "sphere"
    radius_mm: Positive
    pose: Pose = Pose()


Primitive = Annotated[Union[Box, Cylinder, Sphere], Field(discriminator="kind")]


class Collision(str, Enum):
    """How a body collides.

    AUTO uses the declared primitives when there are any, else a convex decomposition of the mesh.
    HULL is one convex hull of the mesh: only correct for a convex part (the validator checks it).
    """

    AUTO = "auto"
    PRIMITIVES = "primitives"
    HULL = "hull"
    DECOMPOSE = "decompose"


class Body(_Frozen):
    """A named rigid body: one build123d part (mm, body frame) and how it moves and collides."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: BodyName
    part: Any = Field(default=None, exclude=True)
    motion: Motion = FIXED
    pose: Pose = Pose()
    parent: BodyName | None = None
    collision: Collision = Collision.AUTO
    primitives: tuple[Primitive, ...] = ()
    density_kg_m3: Positive = 1000.0
    friction: Positive = 0.8
    rgba: tuple[Finite, Finite, Finite, Finite] = (0.7, 0.7, 0.75, 1.0)


class Zone(_Frozen):
    """An axis-aligned goal box in the world frame (mm)."""

    name: BodyName
    center_mm: Vec3
    half_extents_mm: PositiveVec3


class InsideZone(_Frozen):
    """Success when the origin of ``body`` lies inside ``zone``."""

    kind: Literal["inside_zone"] = "inside_zone"
    body: BodyName
    zone: Zone


class JointInRange(_Frozen):
    """Success when the joint of ``body`` is within [low, high] (degrees for hinges, mm for slides)."""

    kind: Literal["joint_in_range"] = "joint_in_range"
    body: BodyName
    low: Finite
    high: Finite

    @model_validator(mode="after")
    def _check(self) -> JointInRange:
        _check_range((self.low, self.high))
        return self


class AllOf(_Frozen):
    """Success when every condition holds."""

    kind: Literal["all_of"] = "all_of"
    conditions: tuple[SuccessCondition, ...] = Field(min_length=1)


SuccessCondition = Annotated[Union[InsideZone, JointInRange, AllOf], Field(discriminator="kind")]
AllOf.model_rebuild()


class ParameterRange(_Frozen):
    """The range a script draws one parameter from, at scale 1."""

    name: str
    low: Finite
    high: Finite
    unit: str = "mm"


class ScaleLimits(_Frozen):
    """Per-axis (x, y, z) limits of the ``scale`` argument this script supports."""

    low: PositiveVec3 = (0.5, 0.5, 0.5)
    high: PositiveVec3 = (2.0, 2.0, 2.0)

    @model_validator(mode="after")
    def _check(self) -> ScaleLimits:
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"scale limits low={self.low} exceed high={self.high} on some axis")
        return self


class DemonstrationStep(_Frozen):
    """One step of a script's own demonstration: where the hand takes ``body`` (world frame), or lets go.

    A free body is carried to ``position_mm`` turned to ``euler_deg`` (either may be omitted: it stays
    as it is); a hinge or slide body is driven to ``joint`` (degrees or mm from its declared pose).
    ``grasp=False`` releases it. ``hold_s`` waits there before the next step.
    """

    body: BodyName
    position_mm: Vec3 | None = None
    euler_deg: Vec3 | None = None
    joint: Finite | None = None
    grasp: bool = True
    hold_s: Annotated[Finite, Field(ge=0, le=10)] = 0.0


class ScriptDemonstration(_Frozen):
    """Waypoints or joint targets that solve the task, tried when the generic oracle does not."""

    steps: tuple[DemonstrationStep, ...] = Field(min_length=1, max_length=200)


class Scenario(_Frozen):
    """What ``build(seed, scale)`` returns: the scene, the task and what was drawn."""

    family: str = Field(min_length=1, max_length=64)
    objective: str = Field(min_length=1, max_length=2000)
    bodies: tuple[Body, ...] = Field(min_length=1, max_length=64)
    success: SuccessCondition
    parameters: dict[str, Finite] = Field(default_factory=dict)
    parameter_ranges: tuple[ParameterRange, ...] = ()
    scale_limits: ScaleLimits = ScaleLimits()
    timestep_s: Finite = 0.002
    demonstration: ScriptDemonstration | None = None
    contract_version: int = CONTRACT_VERSION

    def body(self, name: str) -> Body:
        """Return the body called ``name``."""
        for candidate in self.bodies:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no body named {name!r}; bodies are {[b.name for b in self.bodies]}")


# ---------------------------------------------------------------------------------------------------
# Messages that teach: what a contract model accepts, and the closest valid name to a wrong one.

# Names scripts (and models) commonly guess, mapped to the contract's own.
_GUESSES = {
    "position": "position_mm", "pos": "position_mm", "xyz": "position_mm", "location": "position_mm",
    "rotation": "euler_deg", "orientation": "euler_deg", "euler": "euler_deg", "rot": "euler_deg",
    "joint": "motion", "joint_type": "motion", "type": "kind", "shape": "part", "solid": "part",
    "geometry": "part", "geom": "primitives", "collision_primitives": "primitives", "geoms": "primitives",
    "range": ("range_deg", "range_mm"), "limits": ("range_deg", "range_mm"), "limit": ("range_deg", "range_mm"),
    "anchor": "anchor_mm", "pivot": "anchor_mm", "size": "half_size_mm", "half_size": "half_size_mm",
    "half_sizes": "half_size_mm", "half_extents": "half_extents_mm", "extents": "half_extents_mm",
    "center": "center_mm", "centre": "center_mm", "radius": "radius_mm", "half_length": "half_length_mm",
    "height": "half_length_mm", "length": "half_length_mm", "density": "density_kg_m3", "mass": "density_kg_m3",
    "color": "rgba", "colour": "rgba", "goal": "success", "task": "success", "scale": "scale_limits",
    "params": "parameters", "ranges": "parameter_ranges", "min": "low", "max": "high", "lower": "low",
    "upper": "high", "target": "zone", "timestep": "timestep_s",
}


def public_fields(model: type[BaseModel]) -> list[str]:
    """The fields a script sets on ``model`` (``kind`` discriminators are set by the class itself)."""
    return [name for name in model.model_fields if name != "kind"]


def keyword_only_message(model: type[BaseModel]) -> str:
    fields = public_fields(model)
    message = (
        f"{model.__name__}() takes keyword arguments only; its fields are {', '.join(fields)}: write e.g. "
        f"{model.__name__}({fields[0]}=...)"
    )
    if model.__name__ in ("Box", "Cylinder", "Sphere"):
        message += (
            f". scenario_lib.contract.{model.__name__} is a collision primitive; for a build123d solid import "
            f"`from build123d import {model.__name__} as Solid{model.__name__}`"
        )
    return message


def _closest_field(name: str, fields: list[str]) -> str | None:
    guess = _GUESSES.get(name.lower())
    for candidate in (guess,) if isinstance(guess, str) else guess or ():
        if candidate in fields:
            return candidate
    close = difflib.get_close_matches(name, fields, n=1, cutoff=0.5)
    if close:
        return close[0]
    prefixed = [field for field in fields if field.startswith(name) or name.startswith(field)]
    return prefixed[0] if prefixed else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every contract model an annotation can hold (through Annotated, Union, tuple, Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += [model for model in _models_in(arg) if model not in found]
    return found


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model that holds the field at ``loc`` inside ``model`` (pydantic error locations)."""
    current = model
    for step in loc:
        if isinstance(step, int):
            continue
        field = current.model_fields.get(step)
        if field is not None:
            candidates = _models_in(field.annotation)
            if len(candidates) == 1:
                current = candidates[0]
            continue
        # A union member named by its discriminator tag ("hinge" in motion.hinge.range_deg).
        tagged = [m for m in _all_models() if m.model_fields.get("kind") and m.model_fields["kind"].default == step]
        if tagged:
            current = tagged[0]
    return current


def _all_models() -> list[type[BaseModel]]:
    return [value for value in globals().values() if isinstance(value, type) and issubclass(value, _Frozen) and value is not _Frozen]


def _type_name(annotation: Any) -> str:
    """A short readable spelling of a field's type: ``(float, float, float)``, ``tuple of Body``, ``Pose | None``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {_type_name(args[0])}"
        return "(" + ", ".join(_type_name(arg) for arg in args) + ")"
    if origin is Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is dict:
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_validation_error(err: ValidationError, model: type[BaseModel]) -> list[str]:
    """One sentence per problem in ``err``, naming the valid fields and the closest to a wrong one."""
    problems: list[str] = []
    errors = err.errors(include_url=False)
    # A wrong name whose closest valid one is reported missing is said once, as "did you mean".
    explained: set[tuple[int | str, ...]] = set()
    for error in errors:
        if error["type"] == "extra_forbidden" and error["loc"]:
            loc = tuple(error["loc"])
            closest = _closest_field(str(loc[-1]), public_fields(_model_at(model, loc[:-1])))
            if closest:
                explained.add((*loc[:-1], closest))
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and loc in explained:
            continue
        where = ".".join(str(step) for step in loc)
        owner = _model_at(model, loc[:-1]) if loc else model
        fields = public_fields(owner)
        kind = error["type"]
        given = repr(error.get("input"))[:80]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            closest = _closest_field(name, fields)
            hint = f"; did you mean {closest}?" if closest else ""
            problems.append(f"{owner.__name__} has no field {name!r}; {owner.__name__} has {', '.join(fields)}{hint}")
        elif kind == "missing":
            name = str(loc[-1])
            annotation = owner.model_fields[name].annotation if name in owner.model_fields else None
            problems.append(f"{owner.__name__} needs {name} ({_type_name(annotation)}); {owner.__name__} has {', '.join(fields)}")
        elif kind in ("model_type", "model_attributes_type", "is_instance_of"):
            expected = str((error.get("ctx") or {}).get("class_name", "the contract model"))
            problems.append(f"{model.__name__}.{where}: expected a {expected}(...) object (keyword arguments), got {given}")
        elif kind.startswith("union_tag") or kind == "union_tag_invalid":
            problems.append(f"{model.__name__}.{where}: {error['msg']}; use FIXED, FREE, Hinge(...) or Slide(...) for motion, or the class itself")
        else:
            problems.append(f"{model.__name__}.{where or '(whole object)'}: {error['msg']} (got {given})")
    return problems
