"""Tier presets and `resolve_tier`."""

from __future__ import annotations

import pickle

import pytest

from scenario_lib.authoring.offline import DESIGN_SPACES
from scenario_lib.errors import ConfigError
from scenario_lib.tiers import TIER_PRESETS, Tier, TierPreset, resolve_tier


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", Tier.TIER1),
        ("2", Tier.TIER2),
        ("tier1", Tier.TIER1),
        ("TIER2", Tier.TIER2),
        (" Tier1 ", Tier.TIER1),
        ("test_dummy", Tier.TEST_DUMMY),
        ("TEST_DUMMY", Tier.TEST_DUMMY),
    ],
)
def test_resolve_tier_accepts_the_documented_spellings(value: str, expected: Tier) -> None:
    assert resolve_tier(value) is expected


@pytest.mark.parametrize("value", ["3", "tier3", "", "tier 1", "dummy", "t1"])
def test_resolve_tier_rejects_other_values_naming_the_choices(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_tier(value)
    message = str(caught.value)
    assert repr(value) in message
    for choice in ("'1'", "'2'", "'tier1'", "'tier2'", "'test_dummy'"):
        assert choice in message
    assert isinstance(caught.value, ValueError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_every_tier_has_a_preset_with_known_families() -> None:
    assert set(TIER_PRESETS) == set(Tier)
    for tier, preset in TIER_PRESETS.items():
        assert isinstance(preset, TierPreset)
        assert preset.tier is tier
        assert preset.title and preset.default_prompt and preset.description
        assert preset.families and all(family in DESIGN_SPACES for family in preset.families)
    assert TIER_PRESETS[Tier.TIER1].families == ("peg_in_hole", "slot_insertion", "stacking")
    assert TIER_PRESETS[Tier.TIER2].families == ("lever", "hinged_door", "slider", "seesaw")
    assert TIER_PRESETS[Tier.TEST_DUMMY].families == ("push_box",)


def test_presets_are_read_only() -> None:
    with pytest.raises(TypeError):
        TIER_PRESETS[Tier.TIER1] = TIER_PRESETS[Tier.TIER2]  # type: ignore[index]
