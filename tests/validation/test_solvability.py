"""Solvability: the generic oracle's physical demonstration, its failures, the negative control, and the
demonstration as data. Real build123d parts, real MuJoCo scenes; the hand's actuation is bounded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import pytest
from build123d import Box as SolidBox
from build123d import Pos

from conftest import BuiltScene
from scenario_lib.contract import (
    FIXED,
    FREE,
    Body,
    Box,
    Hinge,
    InsideZone,
    JointInRange,
    Pose,
    Scenario,
    Zone,
)
from scenario_lib.scene.mjcf import compile_mjcf
from scenario_lib.report import ValidationReport, Verdict
from scenario_lib.scene.simulation import simulate_passive
from scenario_lib.scene.demonstration import Demonstration, replay
from scenario_lib.validation.solvability import check_solvability
from scenario_lib.scene.task import is_success
from scenario_lib.validation.pipeline import Validator
from tests.support import SCRIPTS

BuildScene = Callable[..., BuiltScene]
TABLE_T = 10.0
BLOCK_H = 30.0


def peg_in_hole(peg_half: float, hole_half: float, *, zone_x: float = 0.0, zone_z: float | None = None, peg_start_x: float = -90.0) -> Scenario:
    """A square peg standing on a table beside a block with a square through hole (primitive collision)."""
    wall = 15.0
    outer = hole_half + wall
    block = SolidBox(2 * outer, 2 * outer, BLOCK_H).cut(SolidBox(2 * hole_half, 2 * hole_half, BLOCK_H + 2))
    sides = (
        Box(half_size_mm=(wall / 2, outer, BLOCK_H / 2), pose=Pose(position_mm=(hole_half + wall / 2, 0, 0))),
        Box(half_size_mm=(wall / 2, outer, BLOCK_H / 2), pose=Pose(position_mm=(-hole_half - wall / 2, 0, 0))),
        Box(half_size_mm=(hole_half, wall / 2, BLOCK_H / 2), pose=Pose(position_mm=(0, hole_half + wall / 2, 0))),
        Box(half_size_mm=(hole_half, wall / 2, BLOCK_H / 2), pose=Pose(position_mm=(0, -hole_half - wall / 2, 0))),
    )
    length = 50.0
    return Scenario(
        family="peg_in_hole",
        objective="Insert the peg.",
        bodies=(
            Body(name="table", part=SolidBox(300, 200, TABLE_T), pose=Pose(position_mm=(-50, 0, -TABLE_T / 2)),
                 primitives=(Box(half_size_mm=(150, 100, TABLE_T / 2)),)),
            Body(name="block", part=block, pose=Pose(position_mm=(0, 0, BLOCK_H / 2)), primitives=sides, density_kg_m3=2700.0),
            Body(name="peg", part=SolidBox(2 * peg_half, 2 * peg_half, length), motion=FREE, density_kg_m3=7850.0,
                 pose=Pose(position_mm=(peg_start_x, 0, length / 2 + 0.05)),
                 primitives=(Box(half_size_mm=(peg_half, peg_half, length / 2)),)),
        ),
        success=InsideZone(body="peg", zone=Zone(name="bore", center_mm=(zone_x, 0, zone_z or length / 2 + 5), half_extents_mm=(1.5, 1.5, 8))),
    )  # fmt: skip


def solve(build_scene: BuildScene, scenario: Scenario) -> tuple[Any, Demonstration | None, mujoco.MjModel]:
    scene = build_scene(scenario)
    model = compile_mjcf(scene.xml_path)
    stability, passive = simulate_passive(model)
    assert stability.passed, stability.message
    result, demonstration = check_solvability(scene.scenario, model, passive)  # type: ignore[arg-type]
    return result, demonstration, model


def test_a_square_peg_with_0_2_mm_clearance_is_demonstrated_by_the_generic_oracle(build_scene: BuildScene) -> None:
    result, demonstration, model = solve(build_scene, peg_in_hole(8.0, 8.2))

    assert result.passed, result.message
    assert result.metrics["demonstration"] == "generic_oracle"
    assert 0 < float(result.metrics["time_to_success_s"]) <= float(result.metrics["demonstration_s"])
    assert float(result.metrics["path_length_mm"]) > 90  # lifted, carried 90 mm, lowered
    assert demonstration is not None and demonstration.bodies == ("peg",)


def test_a_peg_3_mm_wider_than_its_hole_fails_naming_the_overlap(build_scene: BuildScene) -> None:
    result, _, _ = solve(build_scene, peg_in_hole(9.5, 8.0))

    assert result.verdict is Verdict.FAIL
    assert "no orientation of 'peg' fits into zone 'bore'" in result.message and "overlaps 'block' by" in result.message


def test_a_zone_inside_the_solid_wall_fails(build_scene: BuildScene) -> None:
    # The zone (z 7–23 mm) lies inside the wall (x 8.5–23.5 mm) of the 30 mm tall block.
    result, _, _ = solve(build_scene, peg_in_hole(8.0, 8.5, zone_x=16.0, zone_z=15.0))

    assert result.verdict is Verdict.FAIL and "'block'" in result.message


def test_scales_that_break_the_fit_fail_only_there(build_scene: BuildScene) -> None:
    """The peg scales with sy and the hole with sx: for sx < sy it no longer fits."""
    def build(scale: tuple[float, float, float]) -> Scenario:
        return peg_in_hole(8.0 * scale[1], 8.0 * scale[0] + 0.5)

    fits, _, _ = solve(build_scene, build((1.0, 1.0, 1.0)))
    too_wide, _, _ = solve(build_scene, build((0.8, 1.2, 1.0)))
    assert fits.passed, fits.message
    assert too_wide.verdict is Verdict.FAIL and "no orientation of 'peg' fits" in too_wide.message


def door(wall_at_deg: float | None) -> Scenario:
    """A 200 × 10 × 150 mm door on a vertical hinge at its -x edge; optionally a wall in its swing."""
    bodies = [
        Body(name="base", part=SolidBox(500, 500, 10), pose=Pose(position_mm=(0, 0, -5)),
             primitives=(Box(half_size_mm=(250, 250, 5)),)),
        Body(name="door", part=SolidBox(200, 10, 150), pose=Pose(position_mm=(0, 0, 80)),
             motion=Hinge(axis=(0, 0, 1), anchor_mm=(-100, 5, 0), range_deg=(0, 110), damping=0.05),
             primitives=(Box(half_size_mm=(100, 5, 75)),)),
    ]  # fmt: skip
    if wall_at_deg is not None:
        import math

        # A post 180 mm from the hinge, turned so the door's face meets it at wall_at_deg.
        angle = math.radians(wall_at_deg) + math.atan2(5 + 5 + 1, 180)
        x, y = -100 + 180 * math.cos(angle), 5 + 180 * math.sin(angle)
        bodies.append(Body(name="wall", part=Pos(0, 0, 0) * SolidBox(10, 10, 150), motion=FIXED,
                           pose=Pose(position_mm=(x, y, 80)), primitives=(Box(half_size_mm=(5, 5, 75)),)))  # fmt: skip
    return Scenario(family="door", objective="Open the door.", bodies=tuple(bodies), success=JointInRange(body="door", low=60, high=90))


def test_a_door_opens_to_its_goal_and_is_checked_while_held(build_scene: BuildScene) -> None:
    result, demonstration, model = solve(build_scene, door(None))

    assert result.passed, result.message
    assert demonstration is not None
    data = replay(model, demonstration)
    assert is_success(door(None), model, data)


def test_a_door_blocked_by_a_wall_fails_naming_where_and_what(build_scene: BuildScene) -> None:
    result, _, _ = solve(build_scene, door(25.0))

    assert result.verdict is Verdict.FAIL
    assert "'door' is blocked: its joint stalled at 2" in result.message and "touching 'wall'" in result.message


def test_a_box_just_outside_its_zone_is_not_a_task(build_scene: BuildScene) -> None:
    scenario = Scenario(
        family="push_box", objective="Push the cube.",
        bodies=(
            Body(name="floor", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)), primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=(0, 0, 10.05)),
                 primitives=(Box(half_size_mm=(10, 10, 10)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(30.1, 0, 10), half_extents_mm=(30, 30, 20))),
    )  # fmt: skip
    result, _, _ = solve(build_scene, scenario)

    assert result.verdict is Verdict.FAIL and "left alone, the scene ends 0.1 from success" in result.message


@pytest.mark.parametrize(("lift_mm", "expected"), [(8.0, "it moved 8"), (0.05, None)], ids=["8mm-above", "resting"])
def test_a_box_above_its_floor_is_not_at_rest(build_scene: BuildScene, lift_mm: float, expected: str | None) -> None:
    scenario = Scenario(
        family="push_box", objective="Push the cube.",
        bodies=(
            Body(name="floor", part=SolidBox(400, 400, 10), pose=Pose(position_mm=(0, 0, -5)), primitives=(Box(half_size_mm=(200, 200, 5)),)),
            Body(name="cube", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=(0, 0, 10 + lift_mm)),
                 primitives=(Box(half_size_mm=(10, 10, 10)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="goal", center_mm=(120, 0, 10), half_extents_mm=(30, 30, 20))),
    )  # fmt: skip
    stability, _ = simulate_passive(compile_mjcf(build_scene(scenario).xml_path))
    if expected is None:
        assert stability.passed, stability.message
    else:
        assert not stability.passed and "body 'cube' does not start at rest" in stability.message and expected in stability.message


def test_a_stored_demonstration_replays_to_the_same_state(build_scene: BuildScene) -> None:
    scenario = peg_in_hole(8.0, 8.5)
    result, demonstration, model = solve(build_scene, scenario)
    assert result.passed and demonstration is not None

    stored = Demonstration.from_json(demonstration.to_json())
    first, second = replay(model, stored), replay(model, stored)

    assert stored == demonstration and len(stored.actions) == len(stored.qpos)
    assert np.array_equal(first.qpos, second.qpos)
    assert np.array_equal(first.qpos, np.asarray(stored.qpos[-1]))
    assert is_success(build_scene(scenario).scenario, model, first)  # type: ignore[arg-type]
    payload = json.loads(demonstration.to_json())
    assert payload["control_period_s"] == 0.02 and len(payload["actions"][0]) == 9


def test_a_report_stored_before_the_stage_existed_reads_with_it_not_applicable() -> None:
    old = {
        "script_sha256": "abc",
        "seeds": [
            {"seed": 0, "scale": [1, 1, 1], "stages": [{"stage": s, "verdict": "pass"} for s in ("code", "geometry", "mjcf", "stability", "task")]},
            {"seed": 1, "scale": [1, 1, 1], "stages": [{"stage": "code", "verdict": "fail", "message": "x"}]},
        ],
    }
    report = ValidationReport.model_validate_json(json.dumps(old))

    assert report.format_version == 2
    solvability = report.seeds[0].stages[-1]
    assert solvability.stage.value == "solvability" and solvability.verdict is Verdict.NOT_APPLICABLE
    assert "scenarios revalidate" in solvability.message or "format 1" in solvability.message
    assert report.seeds[0].passed and not report.seeds[1].passed
    assert report.seeds[0].stage_reached.value == "task"


def test_the_scenario_folder_holds_the_demonstration_and_its_hash(tmp_path: Path, validator: Validator) -> None:
    import hashlib

    from scenario_lib.validation.artifacts import DEMONSTRATION_FILE, read_manifest, write_scenario_folder

    source = (SCRIPTS / "dummy_box.py").read_text()
    report, result = validator.validate_script(source)
    assert report.passed, report.summary()
    folder = tmp_path / "run_0"
    write_scenario_folder(folder, scenario_id="run_0", tier="test_dummy", prompt="p", author="offline:x", source=source, report=report, result=result)

    manifest = read_manifest(folder)
    data = (folder / DEMONSTRATION_FILE).read_bytes()
    assert manifest.demonstration_sha256 == hashlib.sha256(data).hexdigest()
    assert DEMONSTRATION_FILE in {entry.path for entry in manifest.files}
    model = mujoco.MjModel.from_xml_path(str(folder / "scene.xml"))
    final = replay(model, Demonstration.from_json(data))
    assert is_success(result.scenario, model, final)  # type: ignore[arg-type]


def test_the_coder_repairs_a_solvability_failure_from_its_feedback(validator: Validator) -> None:
    from scenario_lib.agent import GenerationRequest, ScenarioPlan, StopReason, run_agent
    from scenario_lib.tiers import Tier
    from tests.scripted_model import APPROVE, ScriptedChatModel, fenced

    good = (SCRIPTS / "square_peg.py").read_text()
    too_wide = good.replace("PEG_HALF_MM = 8.0", "PEG_HALF_MM = 9.8")
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", ScenarioPlan(family="peg_in_hole", summary="square peg").model_dump_json())],
            "coder": [fenced("python", too_wide), fenced("python", good)],
            "reviewer": [APPROVE],
        }
    )
    outcome = run_agent(
        GenerationRequest(tier=Tier.TIER1, prompt="a square peg"), validator=validator, chat_model=model, max_attempts=3
    )

    assert outcome.verdict is StopReason.ACCEPTED
    assert [a.stage_reached for a in outcome.attempts] == ["solvability", "solvability"]
    feedback = outcome.attempts[0].feedback
    assert feedback is not None and feedback.stage == "solvability"
    assert "no orientation of 'peg' fits into zone 'bore'" in feedback.message and "overlaps 'block'" in feedback.message
    assert "no orientation of 'peg' fits" in str(model.prompts["coder"][1][-1].content)


def test_revalidate_adds_the_new_stages_to_a_scenario_stored_before_them(tmp_path: Path) -> None:
    import subprocess
    import sys

    from scenario_lib.validation.artifacts import DEMONSTRATION_FILE, MANIFEST_FILE, REPORT_FILE

    store = tmp_path / "store"
    env = {"SCENARIOS_STORE__URL": f"file://{store}", "SCENARIOS_TRACING__EXPORTER": "none", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

    def scenarios(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scenario_lib", *args], capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path)

    generated = scenarios("generate", "--tier", "test_dummy", "--count", "1", "--json")
    assert generated.returncode == 0, generated.stderr
    (folder,) = [path for path in (store / "staging").iterdir() if path.is_dir()]
    # Make it look stored before the solvability stage: a format-1 report, no demonstration.
    report = json.loads((folder / REPORT_FILE).read_text())
    report.pop("format_version")
    for seed in report["seeds"]:
        seed["stages"] = [stage for stage in seed["stages"] if stage["stage"] != "solvability"]
    (folder / REPORT_FILE).write_text(json.dumps(report))
    (folder / DEMONSTRATION_FILE).unlink()
    old = ValidationReport.model_validate_json((folder / REPORT_FILE).read_text())
    assert old.passed and old.seeds[0].stages[-1].verdict is Verdict.NOT_APPLICABLE

    done = scenarios("revalidate", folder.name)

    assert done.returncode == 0, done.stderr + done.stdout
    assert f"{folder.name}: re-validated" in done.stdout
    new = ValidationReport.model_validate_json((folder / REPORT_FILE).read_text())
    assert new.format_version == 2 and all(seed.stages[-1].verdict is Verdict.PASS for seed in new.seeds)
    assert (folder / DEMONSTRATION_FILE).is_file()
    assert json.loads((folder / MANIFEST_FILE).read_text())["demonstration_sha256"]
    missing = scenarios("revalidate", "nope_1")
    assert missing.returncode == 2 and "no committed scenario 'nope_1'" in missing.stderr


def side_slot(with_demonstration: bool) -> Scenario:
    """A peg to push sideways into a square hole through a standing wall: no way in from above."""
    from scenario_lib.contract import DemonstrationStep, ScriptDemonstration

    wall = SolidBox(30, 120, 120).cut(Pos(0, 0, 0) * SolidBox(32, 19, 19))
    def box(x: float, y: float, z: float, hx: float, hy: float, hz: float) -> Box:
        return Box(half_size_mm=(hx, hy, hz), pose=Pose(position_mm=(x, y, z)))
    # Wall frame: centred at (35, 0, 60); the hole runs along x through its middle.
    wall_boxes = (
        box(0, 0, -35.25, 15, 60, 24.75), box(0, 0, 35.25, 15, 60, 24.75),
        box(0, -34.75, 0, 15, 25.25, 9.5), box(0, 34.75, 0, 15, 25.25, 9.5),
    )
    steps = (
        DemonstrationStep(body="peg", position_mm=(-40, 0, 60)),
        DemonstrationStep(body="peg", position_mm=(35, 0, 60)),
        DemonstrationStep(body="peg", grasp=False, hold_s=0.3),
    )
    return Scenario(
        family="side_slot", objective="Push the peg through the hole in the wall.",
        bodies=(
            Body(name="table", part=SolidBox(300, 200, 10), pose=Pose(position_mm=(-20, 0, -5)), primitives=(Box(half_size_mm=(150, 100, 5)),)),
            Body(name="wall", part=wall, pose=Pose(position_mm=(35, 0, 60)), primitives=wall_boxes),
            Body(name="peg", part=SolidBox(60, 16, 16), motion=FREE, pose=Pose(position_mm=(-80, 0, 8.05)),
                 primitives=(Box(half_size_mm=(30, 8, 8)),), density_kg_m3=2700.0),
        ),
        success=InsideZone(body="peg", zone=Zone(name="through", center_mm=(35, 0, 58.5), half_extents_mm=(10, 2, 3))),
        demonstration=ScriptDemonstration(steps=steps) if with_demonstration else None,
    )  # fmt: skip


def test_a_scripts_own_demonstration_solves_what_the_generic_oracle_cannot(build_scene: BuildScene) -> None:
    scene = build_scene(side_slot(True))
    model = compile_mjcf(scene.xml_path)
    stability, passive = simulate_passive(model)
    assert stability.passed, stability.message

    oracle_only, _ = check_solvability(scene.scenario, model, passive, script_demonstrations=False)  # type: ignore[arg-type]
    with_script, demonstration = check_solvability(scene.scenario, model, passive)  # type: ignore[arg-type]

    assert oracle_only.verdict is Verdict.FAIL and "no orientation of 'peg' fits into zone 'through'" in oracle_only.message
    assert with_script.passed, with_script.message
    assert with_script.metrics["demonstration"] == "script" and demonstration is not None and demonstration.source == "script"
    assert is_success(scene.scenario, model, replay(model, demonstration))  # type: ignore[arg-type]
    blocked = side_slot(True).model_copy(update={"demonstration": side_slot(True).demonstration.model_copy(  # type: ignore[union-attr]
        update={"steps": (side_slot(True).demonstration.steps[0].model_copy(update={"position_mm": (35, 0, 90)}),)})})  # type: ignore[union-attr]
    failed, _ = check_solvability(build_scene(blocked).scenario, model, passive)  # type: ignore[arg-type]
    assert failed.verdict is Verdict.FAIL and "the script's demonstration" in failed.message


@pytest.mark.parametrize(
    ("broken", "stage", "fragment"),
    [
        (("sz / 2 + 0.05", "sz / 2 + 8.0"), "stability", "body 'cube' does not start at rest"),
        (("center_mm=(120, 0, sz / 2)", "center_mm=(30.5, 0, sz / 2)"), "solvability", "left alone, the scene ends 0.5"),
    ],
    ids=["dropping-cube", "zone-just-beside"],
)
def test_the_coder_repairs_rest_and_negative_control_failures(
    broken: tuple[str, str], stage: str, fragment: str, validator: Validator
) -> None:
    from scenario_lib.agent import GenerationRequest, ScenarioPlan, StopReason, run_agent
    from scenario_lib.tiers import Tier
    from tests.scripted_model import APPROVE, ScriptedChatModel, fenced

    good = (SCRIPTS / "dummy_box.py").read_text()
    assert broken[0] in good
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", ScenarioPlan(family="push_box", summary="push").model_dump_json())],
            "coder": [fenced("python", good.replace(*broken)), fenced("python", good)],
            "reviewer": [APPROVE],
        }
    )
    outcome = run_agent(
        GenerationRequest(tier=Tier.TEST_DUMMY, prompt="push a cube"), validator=validator, chat_model=model, max_attempts=3
    )

    assert outcome.verdict is StopReason.ACCEPTED
    assert [a.stage_reached for a in outcome.attempts] == [stage, "solvability"]
    feedback = outcome.attempts[0].feedback
    assert feedback is not None and feedback.stage == stage and fragment in feedback.message
    assert fragment in str(model.prompts["coder"][1][-1].content)


def test_the_report_carries_the_tightest_clearance_of_the_fit(build_scene: BuildScene) -> None:
    tight, _, _ = solve(build_scene, peg_in_hole(8.0, 8.2))
    loose, _, _ = solve(build_scene, peg_in_hole(8.0, 9.0))

    assert tight.passed and loose.passed
    assert 0.0 <= float(tight.metrics["tightest_clearance_mm"]) <= 0.25
    assert 0.6 <= float(loose.metrics["tightest_clearance_mm"]) <= 1.05


def test_a_box_on_a_steep_low_friction_ramp_is_not_at_rest(build_scene: BuildScene) -> None:
    import math

    tilt = 35.0
    normal = (math.sin(math.radians(tilt)), 0.0, math.cos(math.radians(tilt)))  # the ramp's top normal (turned about +y)
    # On the ramp's top face (half thickness 5 mm), the box's centre 10 mm + a 0.05 mm gap above it.
    box_centre = tuple(c + n * (5.0 + 10.0 + 0.05) for c, n in zip((0.0, 0.0, 100.0), normal))
    scenario = Scenario(
        family="ramp", objective="Slide the box down.",
        bodies=(
            Body(name="floor", part=SolidBox(800, 400, 10), pose=Pose(position_mm=(0, 0, -5)), primitives=(Box(half_size_mm=(400, 200, 5)),)),
            Body(name="ramp", part=SolidBox(300, 100, 10), pose=Pose(position_mm=(0, 0, 100), euler_deg=(0, tilt, 0)),
                 primitives=(Box(half_size_mm=(150, 50, 5)),), friction=0.2),
            Body(name="box", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=box_centre, euler_deg=(0, tilt, 0)),  # type: ignore[arg-type]
                 primitives=(Box(half_size_mm=(10, 10, 10)),), friction=0.2),
        ),
        success=InsideZone(body="box", zone=Zone(name="goal", center_mm=(-100, 0, 50), half_extents_mm=(20, 20, 20))),
    )  # fmt: skip
    stability, _ = simulate_passive(compile_mjcf(build_scene(scenario).xml_path))

    assert not stability.passed and "body 'box' does not start at rest" in stability.message
    assert stability.metrics["max_linear_speed_m_s"] < 5 and stability.metrics["penetration_t0_mm"] < 0.2
