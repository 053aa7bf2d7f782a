"""The validation pipeline: the harness plan, real validations in a real sandbox pool, and determinism."""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scenario_lib.config import PACKAGED_MJCF_SCHEMA, SandboxMode
from scenario_lib.contract import ScaleLimits
from scenario_lib.report import STAGE_ORDER, Stage, StageResult, ValidationReport, Verdict
from scenario_lib.sandbox.pool import BuildRequest, SandboxPool
from scenario_lib.validation.pipeline import (
    NOMINAL_SCALE,
    HarnessConfig,
    SeedValidation,
    Validator,
    check_build,
    plan_harness,
    script_sha256,
)
from tests.support import REPO, SCRIPTS

PEG_IN_HOLE = (REPO / "examples" / "tier1_peg_in_hole.py").read_text(encoding="utf-8")
# The production sandbox when bubblewrap works here; the scripts are the repository's own, so the
# weaker RLIMITS mode is acceptable where it does not.
MODE = SandboxMode.BWRAP if shutil.which("bwrap") and shutil.which("setpriv") else SandboxMode.RLIMITS
# Metrics that are wall-clock timings, which no run can reproduce.
TIMING_METRICS = {"duration_s", "import_s", "build_s", "checks_s", "schema_s", "compile_s", "collision_s", "wall_s"}

CODE_FAILURE = """
def build(seed, scale):
    raise ValueError(f"no scenario for seed {seed}")
"""
# A tube swept along an arc tighter than its radius: a valid-looking solid that intersects itself.
GEOMETRY_FAILURE = """
from build123d import Box as SolidBox, CenterArc, Circle, Plane, sweep
from scenario_lib.contract import FREE, Body, Box, InsideZone, Pose, Scenario, Sphere, Zone

def build(seed, scale):
    arc = CenterArc((0, 0), 2.0, 0, 270)
    hook = sweep(Plane(origin=arc @ 0, z_dir=arc % 0) * Circle(3), path=arc)
    return Scenario(
        family="self_intersecting",
        objective="Push the hook into the goal zone.",
        bodies=(
            Body(name="floor", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="hook", part=hook, motion=FREE, pose=Pose(position_mm=(0, 0, 20)),
                 primitives=(Sphere(radius_mm=5),)),
        ),
        success=InsideZone(body="hook", zone=Zone(name="goal", center_mm=(120, 0, 10), half_extents_mm=(20, 20, 20))),
    )
"""
# A convex body declared HULL: the misuse rule must let it through.
CONVEX_HULL = """
from build123d import Box as SolidBox
from scenario_lib.contract import FREE, Body, Box, Collision, InsideZone, Pose, Scenario, Zone

def build(seed, scale):
    return Scenario(
        family="convex_hull",
        objective="Push the cube into the goal zone.",
        bodies=(
            Body(name="floor", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)),
                 primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=SolidBox(30, 30, 30), motion=FREE, pose=Pose(position_mm=(0, 0, 15.05)),
                 collision=Collision.HULL),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(120, 0, 15), half_extents_mm=(30, 30, 30))),
    )
"""


def harness(seeds: int, cache: Path) -> HarnessConfig:
    return HarnessConfig(seeds=seeds, mjcf_schema_path=PACKAGED_MJCF_SCHEMA, decomposition_cache_dir=cache)


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(workers=2, mode=MODE) as sandbox:
        sandbox.warm_up()
        yield sandbox


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coacd")


@pytest.fixture(scope="module")
def peg_validation(pool: SandboxPool, cache: Path) -> tuple[ValidationReport, SeedValidation]:
    """The tier-1 example through a 3-seed harness, with a preview of its base seed."""
    return Validator(pool, harness(3, cache)).validate_script(PEG_IN_HOLE, base_seed=11, render_preview=True)


def reproducible(result: StageResult) -> tuple[object, ...]:
    """A stage result without its timings: what two runs must agree on exactly."""
    metrics = {key: value for key, value in result.metrics.items() if key not in TIMING_METRICS}
    return result.stage, result.verdict, result.message, sorted(metrics.items())


# ---------------------------------------------------------------------------------------------------
# The harness plan


def test_plan_is_deterministic_and_starts_with_the_base_seed() -> None:
    limits = ScaleLimits()
    plan = plan_harness(42, 8, limits)

    assert plan == plan_harness(42, 8, limits)
    assert plan != plan_harness(43, 8, limits)
    assert len(plan) == 8 and plan[0][0] == 42
    assert len({seed for seed, _ in plan}) == 8
    assert plan_harness(42, 1, limits) == plan[:1]
    # A longer plan extends a shorter one: the first seeds do not depend on the count.
    assert plan_harness(42, 12, limits)[:8] == plan


def test_plan_has_exactly_one_nominal_scale() -> None:
    for base_seed in range(20):
        plan = plan_harness(base_seed, 8, ScaleLimits())
        assert [scale for _, scale in plan].count(NOMINAL_SCALE) == 1
        assert plan[1][1] == NOMINAL_SCALE


def test_nominal_scale_is_clamped_into_limits_that_exclude_one() -> None:
    limits = ScaleLimits(low=(1.2, 0.5, 0.5), high=(2.0, 0.8, 2.0))

    assert plan_harness(0, 2, limits)[1][1] == (1.2, 0.8, 1.0)


@pytest.mark.parametrize(
    ("limits", "low", "high", "expected_low", "expected_high"),
    [
        (ScaleLimits(), 0.5, 2.0, (0.5, 0.5, 0.5), (2.0, 2.0, 2.0)),
        (ScaleLimits(low=(0.8, 0.3, 0.5), high=(1.5, 3.0, 1.0)), 0.5, 2.0, (0.8, 0.5, 0.5), (1.5, 2.0, 1.0)),
        (ScaleLimits(low=(0.2, 0.2, 0.2), high=(5.0, 5.0, 5.0)), 0.9, 1.1, (0.9, 0.9, 0.9), (1.1, 1.1, 1.1)),
        # Declared limits outside [low, high]: the script's own limits win.
        (ScaleLimits(low=(3.0, 0.5, 0.5), high=(4.0, 2.0, 2.0)), 0.5, 2.0, (3.0, 0.5, 0.5), (4.0, 2.0, 2.0)),
    ],
    ids=["defaults", "intersected-per-axis", "harness-narrower", "disjoint-falls-back-to-declared"],
)
def test_scales_stay_within_declared_limits_and_harness_bounds(
    limits: ScaleLimits,
    low: float,
    high: float,
    expected_low: tuple[float, ...],
    expected_high: tuple[float, ...],
) -> None:
    for base_seed in range(50):
        for _, scale in plan_harness(base_seed, 8, limits, scale_low=low, scale_high=high):
            for axis in range(3):
                # Scales are rounded to 4 decimals, which may step a hair past a bound.
                assert expected_low[axis] - 5e-5 <= scale[axis] <= expected_high[axis] + 5e-5, (base_seed, scale)


def test_random_scales_are_log_uniform() -> None:
    draws = [
        math.log2(scale[axis])
        for base_seed in range(300)
        for index, (_, scale) in enumerate(plan_harness(base_seed, 8, ScaleLimits()))
        if index != 1
        for axis in range(3)
    ]
    # log2 of a log-uniform draw in [0.5, 2] is uniform in [-1, 1]: mean 0, quartiles -0.5 and 0.5, and half
    # the scales below 1 (a uniform draw in [0.5, 2] would put only a third there).
    assert len(draws) == 300 * 7 * 3
    assert statistics.fmean(draws) == pytest.approx(0.0, abs=0.03)
    quartiles = statistics.quantiles(draws, n=4)
    assert quartiles == pytest.approx([-0.5, 0.0, 0.5], abs=0.05)
    assert sum(value < 0 for value in draws) / len(draws) == pytest.approx(0.5, abs=0.03)
    assert -1.0 <= min(draws) and max(draws) <= 1.0


# ---------------------------------------------------------------------------------------------------
# Validating real scripts


def test_example_passes_every_stage_on_every_harness_seed(
    peg_validation: tuple[ValidationReport, SeedValidation],
) -> None:
    report, base = peg_validation

    assert report.passed, report.summary()
    assert report.summary() == "passed all stages on 3 seed(s)"
    assert report.script_sha256 == script_sha256(PEG_IN_HOLE)
    assert {"build123d", "mujoco"} <= set(report.versions)
    assert [seed.seed for seed in report.seeds][0] == 11
    assert [seed.scale for seed in report.seeds][1] == NOMINAL_SCALE
    for seed_report in report.seeds:
        assert [result.stage for result in seed_report.stages] == list(STAGE_ORDER)
        assert all(result.verdict is Verdict.PASS for result in seed_report.stages)
    for stage in STAGE_ORDER:
        assert report.pass_rate(stage) == 1.0
    # The base seed's result carries everything needed to store it.
    assert base.report == report.seeds[0]
    assert base.scenario is not None and base.scenario.family == "peg_in_hole"
    assert base.scene is not None and base.scene.scene_xml.startswith("<mujoco")
    assert set(base.scene.files) == {f"meshes/{body.name}.stl" for body in base.scenario.bodies}
    assert base.preview_png is not None and base.preview_png.startswith(b"\x89PNG\r\n\x1a\n")


def test_example_stages_record_their_measurements(peg_validation: tuple[ValidationReport, SeedValidation]) -> None:
    report, _ = peg_validation
    stages = {result.stage: result for result in report.seeds[0].stages}

    assert stages[Stage.CODE].metrics["bodies"] == 3
    assert stages[Stage.GEOMETRY].metrics["peg.watertight"] is True
    assert stages[Stage.MJCF].metrics["nbody"] == 4  # the world and three bodies
    assert float(stages[Stage.MJCF].metrics["collision_s"]) >= float(stages[Stage.MJCF].metrics["compile_s"])
    assert 0.01 < float(stages[Stage.MJCF].metrics["total_mass_kg"]) < 100
    assert all(result.duration_s >= 0 for result in stages.values())


@pytest.mark.parametrize(
    ("script", "stage", "message", "scene_built"),
    [
        pytest.param("broken_negative_timestep", Stage.MJCF, "timestep is -0.002 s", True, id="negative_timestep"),
        # Refused before any decomposition or assembly.
        pytest.param(
            "broken_peg_on_hull", Stage.MJCF, "declared Collision.HULL but is not convex", False, id="peg_on_hull"
        ),
        pytest.param(
            "broken_interpenetrating", Stage.STABILITY, "interpenetrate by 10 mm at t=0", True, id="interpenetrating"
        ),
        pytest.param("broken_exploding", Stage.STABILITY, "the scene gained", True, id="exploding"),
        pytest.param("broken_already_solved", Stage.TASK, "already holds at t=0", True, id="already_solved"),
        pytest.param("broken_joint_on_fixed", Stage.TASK, "whose motion is fixed", True, id="joint_on_fixed"),
    ],
)
def test_broken_scripts_fail_at_their_stage_and_skip_the_rest(
    pool: SandboxPool, cache: Path, script: str, stage: Stage, message: str, scene_built: bool
) -> None:
    source = (SCRIPTS / f"{script}.py").read_text(encoding="utf-8")

    report, base = Validator(pool, harness(2, cache)).validate_script(source, base_seed=3, render_preview=True)

    assert not report.passed
    for seed_report in report.seeds:
        failure = seed_report.first_failure
        assert failure is not None and failure.stage is stage, seed_report.stages
        assert message in failure.message
        assert seed_report.stage_reached is stage
        position = STAGE_ORDER.index(stage)
        assert [result.verdict for result in seed_report.stages[:position]] == [Verdict.PASS] * position
        later = seed_report.stages[position + 1 :]
        assert [result.stage for result in later] == list(STAGE_ORDER[position + 1 :])
        assert all(
            result.verdict is Verdict.SKIPPED and result.message == f"skipped: {stage.value} failed" for result in later
        )
    assert report.summary().startswith(f"{stage.value} failed at seed 3, scale (")
    assert report.pass_rate(stage) == 0.0
    # A scene that was assembled is kept for the failure record; only a passing seed gets a preview.
    assert (base.scene is not None) is scene_built
    assert base.preview_png is None


@pytest.mark.parametrize(
    ("source", "stage", "message"),
    [
        (CODE_FAILURE, Stage.CODE, "ValueError: no scenario for seed 5"),
        (GEOMETRY_FAILURE, Stage.GEOMETRY, "self-intersects"),
    ],
    ids=["code", "geometry"],
)
def test_early_failures_skip_every_later_stage(
    pool: SandboxPool, cache: Path, source: str, stage: Stage, message: str
) -> None:
    report, base = Validator(pool, harness(1, cache)).validate_script(source, base_seed=5)

    seed_report = report.seeds[0]
    position = STAGE_ORDER.index(stage)
    expected = [Verdict.PASS] * position + [Verdict.FAIL] + [Verdict.SKIPPED] * (len(STAGE_ORDER) - position - 1)
    assert [result.verdict for result in seed_report.stages] == expected
    assert message in seed_report.stages[STAGE_ORDER.index(stage)].message
    assert base.scene is None
    assert (base.scenario is None) == (stage is Stage.CODE)


def test_hull_misuse_rule_accepts_a_convex_hull_body(pool: SandboxPool, cache: Path) -> None:
    report, base = Validator(pool, harness(1, cache)).validate_script(CONVEX_HULL)

    assert report.passed, report.summary()
    assert base.scene is not None and "meshes/cube.stl" in base.scene.files
    assert 'mesh="cube/visual"' in base.scene.scene_xml


def test_hull_misuse_names_the_body_and_its_convexity(pool: SandboxPool, cache: Path) -> None:
    source = (SCRIPTS / "broken_peg_on_hull.py").read_text(encoding="utf-8")
    outcome = pool.run_build(source, BuildRequest(seed=0, scale=NOMINAL_SCALE))

    result = Validator(pool, harness(1, cache)).check_outcome(outcome, 0, NOMINAL_SCALE)

    failure = result.report.first_failure
    assert failure is not None and failure.stage is Stage.MJCF
    ratio = float(failure.message.split("volume/hull volume = ")[1].split(" ")[0])
    # The block is 60x60x40 mm with a 22x22x20 mm blind hole: 1 - 9680/144000.
    assert ratio == pytest.approx(1 - 22 * 22 * 20 / (60 * 60 * 40), abs=0.002)
    assert "Collision.DECOMPOSE" in failure.message
    assert result.scene is None  # refused before any decomposition or assembly


# ---------------------------------------------------------------------------------------------------
# Determinism


def test_same_script_seed_and_scale_give_byte_identical_scene_files(tmp_path: Path) -> None:
    scale = (0.7, 1.3, 1.1)

    def run_in_fresh_pool(cache: Path) -> tuple[ValidationReport, SeedValidation, SeedValidation]:
        with SandboxPool(workers=1, mode=MODE) as fresh:
            validator = Validator(fresh, harness(2, cache))
            report, base = validator.validate_script(PEG_IN_HOLE, base_seed=9)
            scaled = validator.check_outcome(fresh.run_build(PEG_IN_HOLE, BuildRequest(seed=9, scale=scale)), 9, scale)
            return report, base, scaled

    # Two pools started side by side (each pays its own build123d import), each with its own cache.
    with ThreadPoolExecutor(max_workers=2) as executor:
        first, second = executor.map(run_in_fresh_pool, [tmp_path / "cache-a", tmp_path / "cache-b"])

    for one, other in [(first[1], second[1]), (first[2], second[2])]:
        assert one.report.passed and other.report.passed
        assert one.scene is not None and other.scene is not None
        assert one.scene.scene_xml == other.scene.scene_xml
        assert sorted(one.scene.files) == sorted(other.scene.files)
        for name, data in one.scene.files.items():
            assert data == other.scene.files[name], name
        assert one.scenario == other.scenario
        assert [reproducible(r) for r in one.report.stages] == [reproducible(r) for r in other.report.stages]
    assert first[2].report.scale == scale
    # The random base-seed scale and the nominal seed are planned identically, and so validated identically.
    assert [(s.seed, s.scale) for s in first[0].seeds] == [(s.seed, s.scale) for s in second[0].seeds]
    assert [[reproducible(r) for r in s.stages] for s in first[0].seeds] == [
        [reproducible(r) for r in s.stages] for s in second[0].seeds
    ]
    # A different scale is a different scene.
    assert first[1].scene is not None and first[2].scene is not None
    assert first[1].scene.files != first[2].scene.files


def test_a_script_that_cannot_build_at_nominal_scale_is_built_once(pool: SandboxPool, cache: Path) -> None:
    """The probe build's failure is the verdict: a sleeper or crasher must not cost every harness seed."""
    source = "def build(seed, scale):\n    raise RuntimeError('broken for every seed')\n"

    report, base = Validator(pool, harness(8, cache)).validate_script(source, base_seed=3)

    assert len(report.seeds) == 1 and not report.passed
    assert report.seeds[0].scale == (1.0, 1.0, 1.0) and base.report.seed == 3
    assert "broken for every seed" in report.seeds[0].stages[0].message


def test_a_harness_seed_whose_scene_is_not_stored_sends_back_its_report_alone(pool: SandboxPool, cache: Path) -> None:
    outcome = pool.run_build(PEG_IN_HOLE, BuildRequest(seed=9, scale=NOMINAL_SCALE))
    config = harness(1, cache)

    kept = check_build(config, outcome, 9, NOMINAL_SCALE)
    report_only = check_build(config, outcome, 9, NOMINAL_SCALE, keep_scene=False)

    assert kept.report.passed and kept.scene is not None and kept.demonstration is not None
    assert report_only.scene is None and report_only.demonstration is None and report_only.scenario == kept.scenario

    def verdicts(result: SeedValidation) -> list[tuple[object, ...]]:
        # Everything a stage reports but its timings (``*_s``), which differ run to run.
        return [
            (stage.stage, stage.verdict, stage.message, {k: v for k, v in stage.metrics.items() if not k.endswith("_s")})
            for stage in result.report.stages
        ]

    assert verdicts(report_only) == verdicts(kept)
