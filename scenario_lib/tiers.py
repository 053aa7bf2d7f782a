"""Benchmark tiers: what kind of scenario a tier asks for, its default prompt and its families.

TIER1 scenarios are spatial (put a free body into a place: insertion, stacking); TIER2 scenarios are
kinematic (move a jointed body: tip a lever, open a door); TEST_DUMMY is one tiny, fast family for
tests and smoke runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from scenario_lib.errors import ConfigError


class Tier(str, Enum):
    """A benchmark tier."""

    TIER1 = "tier1"
    TIER2 = "tier2"
    TEST_DUMMY = "test_dummy"


@dataclass(frozen=True)
class TierPreset:
    """What a tier generates: a title, the prompt used when none is given, and its scenario families."""

    tier: Tier
    title: str
    default_prompt: str
    families: tuple[str, ...]
    description: str


TIER_PRESETS: Mapping[Tier, TierPreset] = MappingProxyType(
    {
        Tier.TIER1: TierPreset(
            tier=Tier.TIER1,
            title="Tier 1: spatial",
            default_prompt=(
                "A tabletop spatial task: a free part rests on a table and must be placed precisely, e.g. a peg "
                "into a hole, a tab into a slot, or blocks stacked in order on a goal spot."
            ),
            families=("peg_in_hole", "slot_insertion", "stacking"),
            description=(
                "Free bodies resting on fixed supports; success is an InsideZone condition on the moved body "
                "(or all of several), with absolute clearances that do not scale."
            ),
        ),
        Tier.TIER2: TierPreset(
            tier=Tier.TIER2,
            title="Tier 2: kinematic",
            default_prompt=(
                "A jointed mechanism to actuate: tip a lever to its other stop, open a hinged door or flap, push a "
                "carriage along its rail, or tip a loaded seesaw."
            ),
            families=("lever", "hinged_door", "slider", "seesaw"),
            description=(
                "Bodies on hinge or slide joints with ranges and damping, resting at a stop; success is a "
                "JointInRange condition away from the starting pose."
            ),
        ),
        Tier.TEST_DUMMY: TierPreset(
            tier=Tier.TEST_DUMMY,
            title="Test dummy",
            default_prompt="Push a small block across a floor slab into a goal zone.",
            families=("push_box",),
            description="One free body on a slab with primitive collision: tiny and fast, for tests.",
        ),
    }
)

_ALIASES: Mapping[str, Tier] = MappingProxyType(
    {"1": Tier.TIER1, "tier1": Tier.TIER1, "2": Tier.TIER2, "tier2": Tier.TIER2, "test_dummy": Tier.TEST_DUMMY}
)


def resolve_tier(value: str) -> Tier:
    """Parse a user-given tier: "1", "2", "tier1", "tier2" or "test_dummy" (any case, spaces trimmed)."""
    tier = _ALIASES.get(str(value).strip().lower())
    if tier is None:
        choices = ", ".join(repr(alias) for alias in _ALIASES)
        raise ConfigError(f"unknown tier {value!r}; choose one of {choices}")
    return tier
