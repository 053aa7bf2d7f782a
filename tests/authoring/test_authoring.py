"""The offline author and its family templates, checked with real build123d parts and MuJoCo models."""

from __future__ import annotations

import ast
import math
import random
import tempfile
import time
import types
from pathlib import Path

import mujoco
import pytest

from scenario_lib.authoring.offline import (
    DESIGN_SPACES,
    AuthoredScript,
    author_script,
    draw_design,
    family_for,
    render_script,
    template_source,
)
from scenario_lib.contract import AllOf, Body, Hinge, InsideZone, JointInRange, Pose, Scenario, Slide
from scenario_lib.errors import ConfigError
from scenario_lib.scene.geometry import check_solid, export_stl
from scenario_lib.scene.mjcf import assemble_mjcf, compile_mjcf
from scenario_lib.sandbox.outcome import BuildOutcome
from scenario_lib.scene.task import is_success
from scenario_lib.tiers import TIER_PRESETS, Tier
from scenario_lib.validation.pipeline import HarnessConfig, Validator
from tests.support import REPO

EXAMPLES = REPO / "examples"
ALL_FAMILIES = [family for preset in TIER_PRESETS.values() for family in preset.families]
ALLOWED_IMPORTS = {"random", "math", "build123d", "scenario_lib.contract"}


def load_module(source: str, name: str = "authored_scenario") -> types.ModuleType:
    """Execute a script's source as a fresh module (as the sandbox does)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own templates
    return module


def design_in_source(source: str) -> dict[str, object]:
    """The literal DESIGN dict as written in the source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DESIGN" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return value
    raise AssertionError("no DESIGN assignment in the source")


def random_scale(rng: random.Random, scenario: Scenario) -> tuple[float, float, float]:
    """A log-uniform scale within the declared limits intersected with [0.5, 2] (as the harness draws)."""
    limits = scenario.scale_limits
    values = [
        max(lo, 0.5) * (min(hi, 2.0) / max(lo, 0.5)) ** rng.random() for lo, hi in zip(limits.low, limits.high)
    ]
    return (values[0], values[1], values[2])


def validate_in_process(scenario: Scenario, seed: int, scale: tuple[float, float, float]) -> Validator:
    """Run the trusted validation stages on an in-process build (the sandbox's job, done here)."""
    outcome = BuildOutcome(
        scenario_json=scenario.model_dump_json(),
        meshes={body.name: export_stl(body.part) for body in scenario.bodies},
        part_checks={body.name: check_solid(body.part) for body in scenario.bodies},
    )
    # check_outcome never touches the pool; the stages are what this test exercises.
    validator = Validator(None, HarnessConfig())  # type: ignore[arg-type]
    return validator.check_outcome(outcome, seed, scale)  # type: ignore[return-value]


def compile_scenario(scenario: Scenario) -> mujoco.MjModel:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "meshes").mkdir()
        for body in scenario.bodies:
            (Path(folder) / "meshes" / f"{body.name}.stl").write_bytes(export_stl(body.part))
        (Path(folder) / "scene.xml").write_text(assemble_mjcf(scenario, {}), encoding="utf-8")
        return compile_mjcf(Path(folder) / "scene.xml")


def with_pose(scenario: Scenario, name: str, pose: Pose) -> Scenario:
    bodies = tuple(body.model_copy(update={"pose": pose}) if body.name == name else body for body in scenario.bodies)
    return scenario.model_copy(update={"bodies": bodies})


# ---------------------------------------------------------------------------------------------------
# Choosing the family and the design


@pytest.mark.parametrize(
    ("tier", "prompt", "family"),
    [
        (Tier.TIER1, "Insert a peg into a hole", "peg_in_hole"),
        (Tier.TIER1, "pegs and holes", "peg_in_hole"),
        (Tier.TIER1, "Put the card into the SLOT", "slot_insertion"),
        (Tier.TIER1, "stack three blocks into a tower", "stacking"),
        (Tier.TIER2, "a lever to tip", "lever"),
        (Tier.TIER2, "Open the door", "hinged_door"),
        (Tier.TIER2, "lift a flap", "hinged_door"),
        (Tier.TIER2, "push the carriage along its rail", "slider"),
        (Tier.TIER2, "a seesaw with a load", "seesaw"),
        (Tier.TEST_DUMMY, "anything at all", "push_box"),
    ],
    ids=lambda value: value.value if isinstance(value, Tier) else str(value).replace(" ", "_"),
)
def test_author_picks_the_family_from_prompt_keywords(tier: Tier, prompt: str, family: str) -> None:
    for seed in range(5):
        assert author_script(tier, prompt, seed).family == family


def test_keywords_of_another_tier_do_not_leave_the_tier() -> None:
    families = {author_script(Tier.TIER1, "open the door", seed).family for seed in range(30)}
    assert families <= set(TIER_PRESETS[Tier.TIER1].families)


@pytest.mark.parametrize("tier", [Tier.TIER1, Tier.TIER2], ids=lambda tier: tier.value)
def test_without_a_keyword_the_seed_spreads_over_every_family_of_the_tier(tier: Tier) -> None:
    for prompt in (None, "", TIER_PRESETS[tier].default_prompt, "something vague"):
        families = {family_for(tier, prompt, seed) for seed in range(60)}
        assert families == set(TIER_PRESETS[tier].families), prompt


def test_same_arguments_give_byte_identical_source() -> None:
    for tier in Tier:
        for seed in (0, 1, 12345):
            first = author_script(tier, "a prompt", seed)
            second = author_script(tier, "a prompt", seed)
            assert first.source.encode() == second.source.encode()
            assert first == second


def test_different_seeds_give_different_designs() -> None:
    for family in ALL_FAMILIES:
        designs = {tuple(sorted(draw_design(family, seed).items())) for seed in range(12)}
        assert len(designs) >= 3, family
    a, b = author_script(Tier.TIER1, "peg", 1), author_script(Tier.TIER1, "peg", 2)
    assert dict(a.design) != dict(b.design)
    assert a.source != b.source


def test_the_design_is_a_readable_literal_block_in_the_source() -> None:
    for seed in range(10):
        authored = author_script(Tier.TIER2, None, seed)
        assert isinstance(authored, AuthoredScript)
        assert authored.tier is Tier.TIER2
        assert design_in_source(authored.source) == dict(authored.design)
        assert f"author seed {seed}" in authored.source
        # Near the top: before build() is defined.
        assert authored.source.index("DESIGN = {") < authored.source.index("def build(")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_templates_are_valid_scripts_whose_default_design_matches_the_space(family: str) -> None:
    source = template_source(family)
    space = DESIGN_SPACES[family]
    assert design_in_source(source) == {key: values[0] for key, values in space.items()}
    assert render_script(family, {key: values[0] for key, values in space.items()}).count("DESIGN = {") == 1
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    module = load_module(source, family)
    assert callable(module.build)
    assert module.build(0, (1.0, 1.0, 1.0)).family == family


def test_render_script_rejects_designs_outside_the_space() -> None:
    with pytest.raises(ConfigError, match="expected exactly"):
        render_script("peg_in_hole", {"peg_shape": "round"})
    with pytest.raises(ConfigError, match="is not one of"):
        render_script("peg_in_hole", {"peg_shape": "hexagonal", "hole_count": 1, "hole_chamfer": False, "peg_start": "lying"})
    with pytest.raises(ConfigError, match="is not one of"):
        # 1 == True in Python; the type check keeps a bool out of an int choice.
        render_script("peg_in_hole", {"peg_shape": "round", "hole_count": True, "hole_chamfer": False, "peg_start": "lying"})
    with pytest.raises(ConfigError, match="unknown scenario family"):
        template_source("catapult")


# ---------------------------------------------------------------------------------------------------
# Building: valid solids, consistent names, determinism, speed


def check_scenario(scenario: Scenario, scale: tuple[float, float, float]) -> None:
    names = [body.name for body in scenario.bodies]
    assert len(set(names)) == len(names)
    moving = [body for body in scenario.bodies if body.motion.kind != "fixed"]
    assert moving, "something must move"
    for body in scenario.bodies:
        assert body.primitives, f"{body.name} must collide as primitives (no decomposition)"
        assert body.part.is_valid, body.name
        assert body.part.volume > 0, body.name
        assert len(body.part.solids()) == 1, f"{body.name} should be one fused solid"
        assert 500 <= body.density_kg_m3 <= 8000
        box = body.part.bounding_box()
        largest = max(box.size.X, box.size.Y, box.size.Z)
        assert 5.0 <= largest <= 1000.0, (body.name, largest)
    for body in moving:
        mass_kg = body.part.volume * 1e-9 * body.density_kg_m3
        assert 0.001 <= mass_kg <= 500.0, (body.name, mass_kg)
    conditions = scenario.success.conditions if isinstance(scenario.success, AllOf) else (scenario.success,)
    for condition in conditions:
        assert not isinstance(condition, AllOf)
        target = scenario.body(condition.body)
        if isinstance(condition, JointInRange):
            assert isinstance(target.motion, (Hinge, Slide))
            joint_range = target.motion.range_deg if isinstance(target.motion, Hinge) else target.motion.range_mm
            assert joint_range is not None and joint_range[0] <= 0.0 <= joint_range[1]
            assert joint_range[0] <= condition.low < condition.high <= joint_range[1]
            assert not condition.low <= 0.0 <= condition.high, "the task must not hold at t=0"
        else:
            assert isinstance(condition, InsideZone)
            assert target.motion.kind == "free"
    ranges = {item.name: item for item in scenario.parameter_ranges}
    assert set(ranges) <= set(scenario.parameters)
    limits = scenario.scale_limits
    assert all(lo <= s <= hi for lo, s, hi in zip(limits.low, scale, limits.high))


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_builds_valid_solids_over_seeds_and_random_scales(family: str) -> None:
    rng = random.Random(f"scales:{family}")
    tier = next(tier for tier, preset in TIER_PRESETS.items() if family in preset.families)
    durations = []
    for seed in range(24):
        authored = author_script(tier, family.replace("_", " "), seed)
        assert authored.family == family
        build = load_module(authored.source).build
        scale = random_scale(rng, build(seed, (1.0, 1.0, 1.0)))
        started = time.perf_counter()
        scenario = build(seed, scale)
        durations.append(time.perf_counter() - started)
        assert isinstance(scenario, Scenario) and scenario.family == family
        check_scenario(scenario, scale)
    durations.sort()
    # Generous for a loaded 2-core machine; typical medians are 2-25 ms.
    assert durations[len(durations) // 2] < 0.25, durations


def test_build_is_deterministic_per_seed_and_scale() -> None:
    for family in ALL_FAMILIES:
        build = load_module(template_source(family)).build
        first = build(7, (0.8, 1.3, 1.1)).model_dump_json()
        assert build(7, (0.8, 1.3, 1.1)).model_dump_json() == first
        assert build(8, (0.8, 1.3, 1.1)).model_dump_json() != first


def test_clearances_stay_absolute_when_scaled() -> None:
    design = {**draw_design("peg_in_hole", 0), "peg_shape": "round"}
    build = load_module(render_script("peg_in_hole", design)).build
    for scale in ((0.5, 0.5, 0.5), (2.0, 2.0, 2.0)):
        scenario = build(3, scale)
        peg_radius = scenario.body("peg").primitives[0].radius_mm  # type: ignore[union-attr]
        clearance = scenario.parameters["clearance_mm"]
        assert 0.5 <= clearance <= 1.0
        # The octagon fillers' inner faces (half width = apothem · tan 22.5°) sit at the bore radius.
        filler = scenario.body("block").primitives[-1]
        apothem = filler.half_size_mm[1] / math.tan(math.radians(22.5))  # type: ignore[union-attr]
        assert apothem - peg_radius == pytest.approx(clearance)


# ---------------------------------------------------------------------------------------------------
# Physics: the real validation stages, and the task is reachable


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_authored_scripts_pass_every_validation_stage(family: str) -> None:
    rng = random.Random(f"stages:{family}")
    tier = next(tier for tier, preset in TIER_PRESETS.items() if family in preset.families)
    for author_seed in range(4):
        authored = author_script(tier, family.replace("_", " "), author_seed)
        build = load_module(authored.source).build
        seed = rng.randrange(10**6)
        scale = random_scale(rng, build(seed, (1.0, 1.0, 1.0)))
        result = validate_in_process(build(seed, scale), seed, scale)
        failed = [stage for stage in result.report.stages if not stage.passed]  # type: ignore[attr-defined]
        assert not failed, (dict(authored.design), seed, scale, failed[0].message if failed else "")


@pytest.mark.parametrize("family", ["peg_in_hole", "slot_insertion"])
def test_the_part_dropped_over_its_target_falls_into_the_goal_zone(family: str) -> None:
    """The primitive collision leaves the opening open: a part dropped upright over it ends in the zone."""
    moved = {"peg_in_hole": "peg", "slot_insertion": "tab"}[family]
    fixture = {"peg_in_hole": "block", "slot_insertion": "holder"}[family]
    for author_seed, scale in [(0, (1.0, 1.0, 1.0)), (1, (0.5, 0.5, 0.5)), (2, (2.0, 0.6, 1.7)), (3, (0.6, 2.0, 0.5))]:
        authored = author_script(Tier.TIER1, family.replace("_", " "), author_seed)
        scenario = load_module(authored.source).build(author_seed, scale)
        zone = scenario.success.zone  # type: ignore[union-attr]
        top = 2 * scenario.body(fixture).pose.position_mm[2]
        above = Pose(position_mm=(zone.center_mm[0], zone.center_mm[1], top + 2 * zone.half_extents_mm[2] + 80 * scale[2]))
        dropped = with_pose(scenario, moved, above)
        model = compile_scenario(dropped)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        assert not is_success(dropped, model, data)
        mujoco.mj_step(model, data, nstep=int(1.0 / model.opt.timestep))
        assert is_success(dropped, model, data), (dict(authored.design), scale)


def test_a_tower_placed_on_the_goal_spot_stands_and_succeeds() -> None:
    for author_seed in range(4):
        authored = author_script(Tier.TIER1, "stack", author_seed)
        scenario = load_module(authored.source).build(author_seed, (1.0, 1.0, 1.0))
        assert isinstance(scenario.success, AllOf)
        bodies: list[Body] = []
        for body in scenario.bodies:
            zones = [c.zone for c in scenario.success.conditions if isinstance(c, InsideZone) and c.body == body.name]
            if zones:
                x, y, z = zones[0].center_mm
                body = body.model_copy(update={"pose": Pose(position_mm=(x, y, z + 0.05 * (1 + len(bodies))))})
            bodies.append(body)
        stacked = scenario.model_copy(update={"bodies": tuple(bodies)})
        model = compile_scenario(stacked)
        data = mujoco.MjData(model)
        mujoco.mj_step(model, data, nstep=int(1.0 / model.opt.timestep))
        assert is_success(stacked, model, data), dict(authored.design)


@pytest.mark.parametrize("family", TIER_PRESETS[Tier.TIER2].families)
def test_the_joint_target_is_reachable_without_collisions(family: str) -> None:
    """Set the joint to the middle of its target range: the condition holds and nothing interpenetrates."""
    for author_seed in range(4):
        authored = author_script(Tier.TIER2, family.replace("_", " "), author_seed)
        scenario = load_module(authored.source).build(author_seed, (1.0, 1.0, 1.0))
        condition = scenario.success
        assert isinstance(condition, JointInRange)
        model = compile_scenario(scenario)
        data = mujoco.MjData(model)
        body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, condition.body)
        joint = int(model.body_jntadr[body_id])
        target = (condition.low + condition.high) / 2
        hinge = model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE
        data.qpos[model.jnt_qposadr[joint]] = math.radians(target) if hinge else target / 1000
        mujoco.mj_forward(model, data)
        assert is_success(scenario, model, data)
        # Contacts of the jointed body only (a load riding on a tipped lever is not placed for this pose).
        depths = [
            -contact.dist * 1000
            for contact in data.contact[: data.ncon]
            if body_id in (model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2])
        ]
        assert max(depths, default=0.0) < 0.2, (dict(authored.design), depths)


def test_examples_are_what_the_author_writes() -> None:
    """examples/ holds verbatim author output; the seed is in each file's DESIGN comment."""
    cases = {
        "tier1_peg_in_hole.py": (Tier.TIER1, "peg in hole"),
        "tier2_lever.py": (Tier.TIER2, "lever"),
        "test_dummy_push_box.py": (Tier.TEST_DUMMY, None),
    }
    for file_name, (tier, prompt) in cases.items():
        source = (EXAMPLES / file_name).read_text(encoding="utf-8")
        seed = int(source.split("(author seed ", 1)[1].split(")", 1)[0])
        assert author_script(tier, prompt, seed).source == source, file_name


@pytest.mark.slow
@pytest.mark.parametrize("tier", list(Tier), ids=lambda tier: tier.value)
def test_many_authored_scripts_pass_every_stage(tier: Tier) -> None:
    rng = random.Random(f"many:{tier.value}")
    failures = []
    count = 100
    for author_seed in range(count):
        authored = author_script(tier, None, 10_000 + author_seed)
        build = load_module(authored.source).build
        seed = rng.randrange(10**6)
        scale = random_scale(rng, build(seed, (1.0, 1.0, 1.0)))
        result = validate_in_process(build(seed, scale), seed, scale)
        if not result.report.passed:  # type: ignore[attr-defined]
            failures.append((authored.family, dict(authored.design), seed, scale))
    assert len(failures) <= count // 100, failures
