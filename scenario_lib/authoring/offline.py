"""The offline author: writes real scenario scripts from family templates, without an LLM or network.

Each family in ``scenario_lib/authoring/families/`` is a complete scenario script with a literal ``DESIGN`` block of
structural choices (round or square peg, number of holes, hinge side, ...). `author_script` picks a family
of the tier from the prompt's keywords (else by the seed), draws one value per design choice from the
author seed, and returns the template's source with its ``DESIGN`` block rewritten. The script's own
``build(seed, scale)`` then draws the continuous parameters; the author seed and the build seed are
independent.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

from scenario_lib.errors import ConfigError
from scenario_lib.tiers import TIER_PRESETS, Tier

DesignValue = str | int | bool


@dataclass(frozen=True)
class AuthoredScript:
    """A scenario script written by the author: its source and what it was written from."""

    source: str
    tier: Tier
    family: str
    design: Mapping[str, object] = field(default_factory=dict)


# The structural choices of each family; the first value of each is the template's default.
DESIGN_SPACES: Mapping[str, Mapping[str, tuple[DesignValue, ...]]] = MappingProxyType(
    {
        "push_box": {"shape": ("cube", "puck"), "goal_direction": ("+x", "-x", "+y", "-y")},
        "peg_in_hole": {
            "peg_shape": ("round", "square"),
            "hole_count": (1, 2, 3),
            "hole_chamfer": (False, True),
            "peg_start": ("upright", "lying"),
        },
        "slot_insertion": {
            "slot_count": (2, 1, 3),
            "slot_style": ("blind", "through"),
            "tab_shape": ("plain", "t_handle"),
        },
        "stacking": {
            "block_count": (3, 2, 4),
            "block_shape": ("cube", "brick", "disc"),
            "size_order": ("equal", "pyramid"),
        },
        "lever": {
            "with_load": (True, False),
            "fulcrum": ("pillar", "yoke"),
            "handle": (False, True),
        },
        "hinged_door": {
            "hinge_side": ("left", "right", "top"),
            "handle": (True, False),
            "panel": ("solid", "window"),
        },
        "slider": {
            "rail": ("flat", "ramp"),
            "carriage": ("saddle", "block"),
            "knob": (True, False),
        },
        "seesaw": {
            "load_shape": ("box", "cylinder"),
            "counterweight": (False, True),
            "seats": (True, False),
        },
    }
)

# Words in a prompt that point at a family (matched as whole words, singular or plural).
FAMILY_KEYWORDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "push_box": ("push", "box", "cube", "puck", "slide"),
        "peg_in_hole": ("peg", "hole", "pin", "bore", "plug"),
        "slot_insertion": ("slot", "tab", "card", "slit", "key"),
        "stacking": ("stack", "stacking", "stacked", "tower", "pile", "block"),
        "lever": ("lever", "beam", "crowbar", "pry"),
        "hinged_door": ("door", "flap", "hatch", "lid", "gate", "hinge", "hinged"),
        "slider": ("slider", "slide", "rail", "carriage", "drawer", "track"),
        "seesaw": ("seesaw", "teeter", "plank", "balance"),
    }
)

_DESIGN_BLOCK = re.compile(r"^# Structural choices[^\n]*\nDESIGN = \{\n.*?^\}\n", re.MULTILINE | re.DOTALL)
_WORD = re.compile(r"[a-z]+")


def family_for(tier: Tier, prompt: str | None, seed: int) -> str:
    """The tier's family the prompt names by keyword; several or none are decided by the seed."""
    families = TIER_PRESETS[tier].families
    words = {word.removesuffix("s") if len(word) > 3 else word for word in _WORD.findall((prompt or "").lower())}
    words |= set(_WORD.findall((prompt or "").lower()))
    # A family counts once however many of its words appear, so a prompt that names several families
    # (like the tiers' default prompts) leaves the choice to the seed.
    scores = {family: any(keyword in words for keyword in FAMILY_KEYWORDS[family]) for family in families}
    best = max(scores.values())
    candidates = [family for family in families if scores[family] == best]
    if len(candidates) == 1:
        return candidates[0]
    return random.Random(f"family:{tier.value}:{seed}").choice(candidates)


def draw_design(family: str, seed: int) -> dict[str, DesignValue]:
    """One value per structural choice of ``family``, drawn from the author seed."""
    space = _space(family)
    rng = random.Random(f"design:{family}:{seed}")
    return {key: rng.choice(values) for key, values in space.items()}


def template_source(family: str) -> str:
    """The source text of a family template (a complete scenario script with its default DESIGN)."""
    _space(family)
    return resources.files("scenario_lib.authoring.families").joinpath(f"{family}.py").read_text(encoding="utf-8")


def render_script(family: str, design: Mapping[str, DesignValue], seed: int | None = None) -> str:
    """The template of ``family`` with its DESIGN block replaced by ``design`` (keys must match)."""
    space = _space(family)
    if set(design) != set(space):
        raise ConfigError(
            f"design for {family!r} has keys {sorted(design)}; expected exactly {sorted(space)}"
        )
    for key, value in design.items():
        if value not in space[key] or type(value) is not type(space[key][0]):
            raise ConfigError(f"design value {key}={value!r} is not one of {space[key]} for family {family!r}")
    source = template_source(family)
    origin = f"drawn by the offline author (author seed {seed})" if seed is not None else "set by hand"
    block = f"# Structural choices of this script, {origin}; edit freely within the listed options.\n"
    block += "".join(f"# {key}: {' | '.join(_literal(value) for value in space[key])}\n" for key in space)
    block += "DESIGN = {\n" + "".join(f"    {json.dumps(key)}: {_literal(design[key])},\n" for key in space) + "}\n"
    rewritten, replaced = _DESIGN_BLOCK.subn(lambda _: block, source, count=1)
    if replaced != 1:
        raise ConfigError(f"template {family}.py has no '# Structural choices ...' + DESIGN block to rewrite")
    return rewritten


def author_script(tier: Tier, prompt: str | None, seed: int) -> AuthoredScript:
    """Write a scenario script for ``tier``: a family chosen by the prompt (else the seed), a design drawn
    from the seed. The same arguments always give byte-identical source."""
    family = family_for(tier, prompt, seed)
    design = draw_design(family, seed)
    return AuthoredScript(
        source=render_script(family, design, seed),
        tier=tier,
        family=family,
        design=MappingProxyType(dict(design)),
    )


def _space(family: str) -> Mapping[str, tuple[DesignValue, ...]]:
    try:
        return DESIGN_SPACES[family]
    except KeyError:
        raise ConfigError(f"unknown scenario family {family!r}; known families are {sorted(DESIGN_SPACES)}") from None


def _literal(value: DesignValue) -> str:
    # json.dumps gives double-quoted strings (the templates' style); bools and ints keep Python spelling.
    return json.dumps(value) if isinstance(value, str) else repr(value)
