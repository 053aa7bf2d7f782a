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

import math
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
    contract_version: int = CONTRACT_VERSION

    def body(self, name: str) -> Body:
        """Return the body called ``name``."""
        for candidate in self.bodies:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no body named {name!r}; bodies are {[b.name for b in self.bodies]}")
