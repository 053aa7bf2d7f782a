"""Passive-stability checks on real MuJoCo models: good scenes pass, broken ones fail for the right reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mujoco
import pytest
from build123d import Box as SolidBox

from conftest import BuiltScene, load_script
from scenario_lib.scene.collision import convexity_ratio
from scenario_lib.contract import FREE, Body, Box, Collision, InsideZone, Pose, Scenario, Zone
from scenario_lib.scene.mjcf import compile_mjcf
from scenario_lib.report import Stage, Verdict
from scenario_lib.scene.limits import StabilityThresholds
from scenario_lib.scene.simulation import check_stability
from tests.support import DATA

BuildScene = Callable[..., BuiltScene]


def _settle(model: mujoco.MjModel, duration_s: float) -> mujoco.MjData:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    while data.time < duration_s:
        mujoco.mj_step(model, data)
    return data


def test_dummy_box_is_stable(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    result = check_stability(model)
    assert result.passed, result.message
    assert result.stage is Stage.STABILITY
    metrics = result.metrics
    assert metrics["steps"] == 500 and metrics["sim_time_s"] == pytest.approx(1.0)
    # The cube starts 0.05 mm above the floor: it drops that gap (v = sqrt(2 g h) ≈ 0.03 m/s at most).
    assert metrics["max_linear_speed_m_s"] < 0.05
    assert metrics["penetration_t0_mm"] == 0.0
    assert metrics["penetration_at_rest_mm"] < 0.2
    assert metrics["energy_gain_fraction"] <= 1e-6
    assert metrics["warnings"] == 0
    assert result.duration_s < 0.5
    print(f"stability 1 s at 2 ms: {result.duration_s * 1000:.1f} ms")


def test_interpenetrating_bodies_fail_at_t0(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("broken_interpenetrating").xml_path)
    result = check_stability(model)
    assert result.verdict is Verdict.FAIL
    # The cube starts 10 mm inside the block.
    assert result.metrics["penetration_t0_mm"] == pytest.approx(10.0, abs=0.1)
    assert "bodies 'block' and 'cube' interpenetrate by 10 mm at t=0" in result.message
    assert "move them apart" in result.message


def test_overlapping_free_bodies_gain_energy(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("broken_exploding").xml_path)
    result = check_stability(model)
    assert result.verdict is Verdict.FAIL
    metrics = result.metrics
    assert metrics["penetration_t0_mm"] == pytest.approx(280.0, abs=0.5)
    # MuJoCo's soft contacts separate them over ~20 ms: about 20 J appear from nowhere (> 5 % of m·g·extent).
    assert metrics["energy_gain_fraction"] > 0.05
    assert metrics["energy_gain_j"] == pytest.approx(19.6, rel=0.1)
    assert "the scene gained" in result.message and "remove overlaps between bodies" in result.message


def _tampered(scene: BuiltScene, extra: str) -> mujoco.MjModel:
    xml = scene.xml_path.read_text(encoding="utf-8").replace("  <asset>", f"  {extra}\n  <asset>", 1)
    path = scene.xml_path.with_name("tampered.xml")
    path.write_text(xml, encoding="utf-8")
    return compile_mjcf(path)


def test_stiff_contacts_throw_bodies(build_scene: BuildScene) -> None:
    # Contacts stiffer than the solver can integrate, on the overlapping crates: they fly apart.
    model = _tampered(build_scene("broken_exploding"), '<default><geom solref="-100000 -10"/></default>')
    result = check_stability(model)
    assert result.verdict is Verdict.FAIL
    assert result.metrics["max_linear_speed_m_s"] > 20
    assert result.metrics["energy_gain_fraction"] > 1
    assert "body 'left' reached" in result.message or "body 'right' reached" in result.message


def test_mujoco_warnings_fail(build_scene: BuildScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warnings to ./MUJOCO_LOG.TXT
    # An arena too small for the cube's contacts: MuJoCo drops them, warns, and the cube falls through.
    model = _tampered(build_scene("dummy_box"), '<size memory="4K"/>')
    result = check_stability(model)
    assert result.verdict is Verdict.FAIL
    assert result.metrics["warnings"] > 0
    assert "MuJoCo raised warnings {'mjWARN_CNSTRFULL'" in result.message
    assert "use fewer convex pieces or primitives" in result.message


def test_mujoco_fatal_error_is_a_failure_not_a_crash(
    build_scene: BuildScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warnings to ./MUJOCO_LOG.TXT
    model = _tampered(build_scene("dummy_box"), '<size memory="6K"/>')
    result = check_stability(model)
    assert result.verdict is Verdict.FAIL
    assert result.message.startswith("MuJoCo stopped with a fatal error: mj_stackAlloc: out of memory")
    assert result.metrics["steps"] < 500


def test_unsupported_body_falls(build_scene: BuildScene) -> None:
    floating = Scenario(
        family="t", objective="t",
        bodies=(
            Body(name="anchor", part=SolidBox(10, 10, 10), primitives=(Box(half_size_mm=(5, 5, 5)),)),
            Body(name="cube", part=SolidBox(20, 20, 20), motion=FREE, pose=Pose(position_mm=(100, 0, 0)),
                 primitives=(Box(half_size_mm=(10, 10, 10)),)),
        ),
        success=InsideZone(body="cube", zone=Zone(name="z", center_mm=(0, 0, 50), half_extents_mm=(5, 5, 5))),
    )
    result = check_stability(compile_mjcf(build_scene(floating).xml_path))
    assert result.verdict is Verdict.FAIL
    # Free fall for 1 s: v = g t (the energy stays constant, so only the speed check sees it).
    assert result.metrics["max_linear_speed_m_s"] == pytest.approx(9.81, rel=0.01)
    assert result.metrics["energy_gain_fraction"] < 0.01
    assert "body 'cube' reached 9.79 m/s" in result.message and "falls unsupported" in result.message


def test_resting_penetration_threshold_names_the_bodies(build_scene: BuildScene) -> None:
    model = compile_mjcf(build_scene("dummy_box").xml_path)
    strict = StabilityThresholds(max_penetration_rest_mm=1e-4)
    result = check_stability(model, duration_s=0.3, thresholds=strict)
    assert result.verdict is Verdict.FAIL
    assert result.metrics["steps"] == 150
    assert "bodies 'floor' and 'cube' still interpenetrate" in result.message


def test_peg_enters_decomposed_hole(build_scene: BuildScene) -> None:
    """FIELD_NOTES pitfall: with convex pieces the dropped peg goes into the hole; it does not start at rest."""
    scene = build_scene("broken_peg_on_hull", block_collision=Collision.DECOMPOSE)
    model = compile_mjcf(scene.xml_path)
    result = check_stability(model)
    assert not result.passed and result.message.startswith("body 'peg' does not start at rest: it moved 2")
    assert "(mostly −z: down, relative to 'block')" in result.message
    assert result.metrics["max_linear_speed_m_s"] < 5 and result.metrics["penetration_at_rest_mm"] < 0.5
    script = load_script("broken_peg_on_hull").__globals__
    data = _settle(model, 1.0)
    peg_bottom_mm = data.body("peg").xpos[2] * 1000 - script["PEG_LENGTH_MM"] / 2
    hole_bottom_mm = script["BLOCK_MM"][2] - script["HOLE_DEPTH_MM"]
    assert peg_bottom_mm == pytest.approx(hole_bottom_mm, abs=0.5)


def test_peg_rests_on_single_hull(build_scene: BuildScene) -> None:
    """The same block as one convex hull: the hole is filled and the peg stays on top of it."""
    scene = build_scene("broken_peg_on_hull", block_collision=Collision.HULL)
    assert convexity_ratio(scene.meshes["block"]) < 0.95  # what the pipeline rejects HULL on
    script = load_script("broken_peg_on_hull").__globals__
    data = _settle(compile_mjcf(scene.xml_path), 1.0)
    peg_bottom_mm = data.body("peg").xpos[2] * 1000 - script["PEG_LENGTH_MM"] / 2
    assert peg_bottom_mm == pytest.approx(script["BLOCK_MM"][2], abs=0.5)


CALIBRATION = DATA / "mjcf_calibration"


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        ("box_baked_at_rest.xml", None),
        ("stack_baked_at_rest.xml", None),  # 0.37 mm into its contacts at t=0, at their equilibrium
        ("mujoco_dominos_standing.xml", None),
        ("mujoco_mug_collision.xml", None),
        ("box_dropping_8mm.xml", "body 'box' does not start at rest: it moved 8.9"),
        ("box_on_35deg_ramp.xml", "body 'box' does not start at rest: it moved"),
        ("box_3mm_inside_floor.xml", "bodies 'world' and 'box' interpenetrate by 3 mm at t=0"),
        ("mujoco_dominos.xml", "interpenetrate"),
        ("mujoco_newton_cradle.xml", "body 'perturbed0' does not start at rest"),
        ("mujoco_stonehenge.xml", "wrecking ball"),
        ("mujoco_slider_crank.xml", "does not start at rest"),
    ],
    ids=lambda value: str(value).removesuffix(".xml") if isinstance(value, str) and value.endswith(".xml") else "",
)
def test_at_rest_calibration_scenes(scene: str, expected: str | None) -> None:
    result = check_stability(mujoco.MjModel.from_xml_path(str(CALIBRATION / scene)))
    if expected is None:
        assert result.passed, result.message
        assert result.metrics["max_drift_mm"] < 0.5 and result.metrics["max_drift_deg"] < 0.5
    else:
        assert not result.passed and expected in result.message, result.message


def test_a_drift_message_names_the_body_the_direction_and_the_fix() -> None:
    result = check_stability(mujoco.MjModel.from_xml_path(str(CALIBRATION / "box_dropping_8mm.xml")))
    assert "(mostly −z: down)" in result.message
    assert "Lower it onto its support" in result.message and "raise the friction" in result.message
    ramp = check_stability(mujoco.MjModel.from_xml_path(str(CALIBRATION / "box_on_35deg_ramp.xml")))
    assert "mostly −x" in ramp.message and ramp.metrics["max_linear_speed_m_s"] < 5  # speed alone never saw it


def test_scenarios_validate_takes_a_raw_mjcf_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    def validate(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scenario_lib", "validate", str(path), "--json"], capture_output=True, text=True, timeout=120, check=False)

    at_rest = validate(CALIBRATION / "mujoco_mug_collision.xml")
    assert at_rest.returncode == 0, at_rest.stderr
    import json

    verdicts = {s["stage"]: s["verdict"] for s in json.loads(at_rest.stdout)["seeds"][0]["stages"]}
    assert verdicts == {"code": "not_applicable", "geometry": "not_applicable", "mjcf": "pass", "stability": "pass", "task": "not_applicable", "solvability": "not_applicable"}
    dropping = validate(CALIBRATION / "box_dropping_8mm.xml")
    assert dropping.returncode == 1 and "does not start at rest" in dropping.stdout
    (tmp_path / "evil.xml").write_text('<mujoco><asset><mesh file="../../etc/passwd"/></asset></mujoco>')
    evil = validate(tmp_path / "evil.xml")
    assert evil.returncode == 2 and "outside its own folder" in evil.stderr and "Traceback" not in evil.stderr
    (tmp_path / "broken.xml").write_text("<mujoco><worldbody>")
    broken = validate(tmp_path / "broken.xml")
    assert broken.returncode == 2 and "not well-formed XML" in broken.stderr and len(broken.stderr.strip().splitlines()) <= 3
