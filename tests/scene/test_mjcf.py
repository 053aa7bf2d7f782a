"""MJCF assembly, schema, compilation and model rules on real scenarios and real MuJoCo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
import pytest
from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder

from conftest import SHARED_XSD, BuiltScene, load_script
from scenario_lib.contract import (
    FIXED,
    FREE,
    Body,
    Box,
    Cylinder,
    Hinge,
    InsideZone,
    JointInRange,
    Pose,
    Scenario,
    Slide,
    Sphere,
    Zone,
)
from scenario_lib.errors import MjcfError
from scenario_lib.scene.mjcf import (
    assemble_mjcf,
    check_model_rules,
    check_schema,
    compile_mjcf,
    compile_mjcf_text,
    mjcf_stage,
    rotation_matrix,
)
from scenario_lib.report import Stage, Verdict

BuildScene = Callable[..., BuiltScene]


def scene_in_memory(xml_path: Path) -> tuple[str, dict[str, bytes]]:
    """A built scene folder as the MJCF stage takes it: its MJCF text and its files by relative path."""
    folder = xml_path.parent
    files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*.stl")}
    return xml_path.read_text(encoding="utf-8"), files


def nested_scenario() -> Scenario:
    """A fixed, rotated base carrying a hinged arm that carries a sliding block (all poses world-frame)."""
    return Scenario(
        family="nested",
        objective="Swing the arm.",
        bodies=(
            Body(name="base", part=SolidBox(100, 100, 20), pose=Pose(position_mm=(10, 20, 10), euler_deg=(0, 0, 30)),
                 primitives=(Box(half_size_mm=(50, 50, 10)),)),
            Body(name="arm", part=SolidBox(80, 10, 10), parent="base",
                 pose=Pose(position_mm=(30, 40, 35.05), euler_deg=(0, 0, 45)),
                 motion=Hinge(axis=(0, 0, 1), anchor_mm=(-40, 0, 0), range_deg=(-90, 90), damping=0.01),
                 primitives=(Box(half_size_mm=(40, 5, 5)),)),
            Body(name="slider", part=SolidCylinder(4, 8), parent="arm",
                 pose=Pose(position_mm=(40, 50, 49.1), euler_deg=(10, 20, 30)),
                 motion=Slide(axis=(1, 0, 0), range_mm=(-20, 20)),
                 primitives=(Cylinder(radius_mm=4, half_length_mm=4),
                             Sphere(radius_mm=1, pose=Pose(position_mm=(0, 0, 4))))),
        ),
        success=JointInRange(body="arm", low=30, high=60),
    )


def test_dummy_box_passes_with_schema(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    result, model = mjcf_stage(*scene_in_memory(scene.xml_path), scene.scenario, SHARED_XSD)  # type: ignore[arg-type]
    assert result.passed, result.message
    assert result.stage is Stage.MJCF
    assert model is not None
    side_mm = scene.scenario.parameters["side_mm"]  # type: ignore[attr-defined]
    # Mass comes from the exact mesh volume and density 1000 kg/m³: floor 400x400x10 mm plus the cube.
    assert result.metrics["total_mass_kg"] == pytest.approx(1.6 + (side_mm / 1000) ** 3 * 1000, rel=1e-4)
    assert model.body("cube").mass[0] == pytest.approx((side_mm / 1000) ** 3 * 1000, rel=1e-4)
    assert result.metrics["nbody"] == 3 and result.metrics["ngeom"] == 4
    assert model.opt.timestep == pytest.approx(0.002)
    assert model.opt.enableflags & mujoco.mjtEnableBit.mjENBL_ENERGY
    # The visual geom carries the mass and no contacts; the collision geom only contacts.
    visual, collision = model.geom("cube/visual"), model.geom("cube/collision0")
    assert (visual.contype[0], visual.conaffinity[0]) == (0, 0)
    assert collision.size[:3] * 1000 == pytest.approx([side_mm / 2] * 3, rel=1e-6)
    assert collision.friction[0] == pytest.approx(0.8)
    print(f"MJCF stage: {result.duration_s * 1000:.1f} ms {result.metrics}")


def test_assembly_is_deterministic(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box", seed=3, scale=(1.3, 0.7, 1.1))
    again = load_script("dummy_box")(3, (1.3, 0.7, 1.1))
    parsed = Scenario.model_validate_json(again.model_dump_json())  # type: ignore[attr-defined]
    assert assemble_mjcf(parsed, {}) == scene.xml_path.read_text(encoding="utf-8")
    assert assemble_mjcf(parsed, {}) == assemble_mjcf(parsed, {})


@pytest.mark.parametrize("script", ["dummy_box", "broken_peg_on_hull", "nested"])
def test_a_scene_in_memory_compiles_to_the_model_of_its_folder(build_scene: BuildScene, script: str) -> None:
    scene = build_scene(nested_scenario() if script == "nested" else script)
    on_disk = compile_mjcf(scene.xml_path)
    in_memory = compile_mjcf_text(*scene_in_memory(scene.xml_path))
    arrays = [name for name in dir(on_disk) if isinstance(getattr(on_disk, name), np.ndarray)]
    assert len(arrays) > 100 and on_disk.nmesh >= 2
    differing = [name for name in arrays if not np.array_equal(getattr(on_disk, name), getattr(in_memory, name), equal_nan=True)]
    # Only where the mesh files were read from (the folder's absolute path, or nothing) and the two sizes
    # that follow from it (npaths, and the buffer holding the paths).
    assert set(differing) <= {"paths", "mesh_pathadr", "_sizes"}, differing
    assert int(np.count_nonzero(on_disk._sizes != in_memory._sizes)) <= 2 and on_disk.npaths > in_memory.npaths


def test_nested_bodies_keep_their_world_poses(build_scene: BuildScene) -> None:
    scene = build_scene(nested_scenario())
    xml = scene.xml_path.read_text(encoding="utf-8")
    assert check_schema(xml, SHARED_XSD) == []
    model = compile_mjcf(scene.xml_path)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    for body in scene.scenario.bodies:  # type: ignore[attr-defined]
        assert data.body(body.name).xpos * 1000 == pytest.approx(body.pose.position_mm, abs=1e-6)
        assert data.body(body.name).xmat.reshape(3, 3) == pytest.approx(rotation_matrix(body.pose.euler_deg), abs=1e-9)
    # The slider hangs from the arm, which hangs from the base.
    assert model.body("slider").parentid[0] == model.body("arm").id
    assert model.body("arm").parentid[0] == model.body("base").id
    hinge, slide = model.joint("arm/hinge"), model.joint("slider/slide")
    assert hinge.range == pytest.approx(np.radians([-90, 90]))
    assert hinge.limited[0] and slide.limited[0]
    assert slide.range == pytest.approx([-0.02, 0.02])
    assert hinge.damping[0] == pytest.approx(0.01)
    # The hinge anchor is 40 mm behind the arm's origin along its own x axis.
    assert data.xanchor[hinge.id] * 1000 == pytest.approx(
        np.array([30, 40, 35.05]) + rotation_matrix((0, 0, 45)) @ np.array([-40, 0, 0]), abs=1e-6
    )
    assert model.geom("slider/collision1").type[0] == mujoco.mjtGeom.mjGEOM_SPHERE


def test_zone_site_and_preview_camera(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    model = compile_mjcf(scene.xml_path)
    goal = scene.scenario.success.zone  # type: ignore[attr-defined]
    site = model.site("zone/goal")
    assert site.size * 1000 == pytest.approx(goal.half_extents_mm)
    assert model.camera("preview") is not None
    assert model.nlight == 1


def test_mesh_scale_tampering_is_caught(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    xml = scene.xml_path.read_text(encoding="utf-8")
    assert xml.count('scale="0.001 0.001 0.001"') == 2
    scene.xml_path.write_text(xml.replace('scale="0.001 0.001 0.001"', 'scale="1 1 1"', 1), encoding="utf-8")
    result, model = mjcf_stage(*scene_in_memory(scene.xml_path), scene.scenario, SHARED_XSD)  # type: ignore[arg-type]
    assert result.verdict is Verdict.FAIL and model is None
    assert "mesh 'floor/visual' has scale 1 1 1" in result.message
    assert "must be 0.001 0.001 0.001" in result.message


def test_negative_timestep_is_caught(build_scene: BuildScene) -> None:
    scene = build_scene("broken_negative_timestep")
    model = compile_mjcf(scene.xml_path)  # MuJoCo itself accepts it
    assert model.opt.timestep == pytest.approx(-0.002)
    result, model = mjcf_stage(*scene_in_memory(scene.xml_path), scene.scenario, None)  # type: ignore[arg-type]
    assert result.stage is Stage.MJCF and result.verdict is Verdict.FAIL and model is None
    assert "timestep is -0.002 s" in result.message


def test_schema_errors_carry_line_numbers(build_scene: BuildScene) -> None:
    xml = build_scene("dummy_box").xml_path.read_text(encoding="utf-8")
    broken = xml.replace('<freejoint name="cube/free"/>', '<freejoint name="cube/free" wobble="1"/>')
    errors = check_schema(broken, SHARED_XSD)
    line = broken.splitlines().index(next(row for row in broken.splitlines() if "wobble" in row)) + 1
    assert errors and errors[0].startswith(f"line {line}:") and "wobble" in errors[0]
    assert check_schema("<mujoco><worldbody>", SHARED_XSD)[0].startswith("line 1: XML syntax error")


def test_compile_error_is_reported_with_mujoco_message(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")
    (scene.xml_path.parent / "meshes" / "cube.stl").unlink()
    with pytest.raises(MjcfError, match="cube.stl"):
        compile_mjcf(scene.xml_path)
    result, model = mjcf_stage(*scene_in_memory(scene.xml_path), scene.scenario, None)  # type: ignore[arg-type]
    assert result.verdict is Verdict.FAIL and model is None
    assert result.message.startswith("MuJoCo refused the scene's MJCF") and "cube.stl" in result.message


def _rewrite_stl(path: Path, transform: Callable[[np.ndarray], np.ndarray]) -> None:
    data = path.read_bytes()
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    rows = transform(np.frombuffer(data, dtype=record, offset=84).copy())
    path.write_bytes(data[:80] + len(rows).to_bytes(4, "little") + rows.tobytes())


def test_inside_out_mesh_is_refused(build_scene: BuildScene) -> None:
    scene = build_scene("dummy_box")

    def flip(rows: np.ndarray) -> np.ndarray:
        rows["corners"] = rows["corners"][:, ::-1]
        return rows

    _rewrite_stl(scene.xml_path.parent / "meshes" / "cube.stl", flip)
    with pytest.raises(MjcfError, match="mesh volume is negative"):
        compile_mjcf(scene.xml_path)


def test_open_mesh_compiles_with_a_wrong_mass(build_scene: BuildScene) -> None:
    """MuJoCo 4 does not refuse an open mesh with inertia="exact": the geometry stage must catch it."""
    scene = build_scene("dummy_box")
    full_mass = compile_mjcf(scene.xml_path).body("cube").mass[0]
    _rewrite_stl(scene.xml_path.parent / "meshes" / "cube.stl", lambda rows: rows[:-2])
    assert compile_mjcf(scene.xml_path).body("cube").mass[0] < 0.95 * full_mass


def test_rewritten_mesh_is_not_served_from_mujocos_cache(build_scene: BuildScene) -> None:
    first = build_scene("dummy_box", seed=0)
    second = build_scene("dummy_box", seed=1)
    mass = compile_mjcf(first.xml_path).body("cube").mass[0]
    # Same path, new content (as when a scene folder is reused for the next seed).
    (first.xml_path.parent / "meshes" / "cube.stl").write_bytes(second.meshes["cube"])
    expected = (second.scenario.parameters["side_mm"] / 1000) ** 3 * 1000  # type: ignore[attr-defined]
    assert compile_mjcf(first.xml_path).body("cube").mass[0] == pytest.approx(expected, rel=1e-4)
    assert abs(expected - mass) > 1e-3


def test_implausible_mass_and_static_scene(build_scene: BuildScene) -> None:
    light = load_script("dummy_box")(0, (1, 1, 1))
    bodies = (light.bodies[0], light.bodies[1].model_copy(update={"density_kg_m3": 0.01}))
    scene = build_scene(light.model_copy(update={"bodies": bodies}))
    problems = check_model_rules(compile_mjcf(scene.xml_path), scene.scenario)  # type: ignore[arg-type]
    assert len(problems) == 1 and "moving body 'cube' weighs" in problems[0]

    frozen = (light.bodies[0], light.bodies[1].model_copy(update={"motion": FIXED}))
    scene = build_scene(light.model_copy(update={"bodies": frozen}))
    problems = check_model_rules(compile_mjcf(scene.xml_path), scene.scenario)  # type: ignore[arg-type]
    assert any("no body can move" in problem for problem in problems)


def test_assembly_refuses_inexpressible_scenarios() -> None:
    box = Box(half_size_mm=(5, 5, 5))
    zone = InsideZone(body="a", zone=Zone(name="z", center_mm=(0, 0, 0), half_extents_mm=(1, 1, 1)))
    free_child = Scenario(
        family="t", objective="t", success=zone,
        bodies=(Body(name="a", primitives=(box,)), Body(name="b", motion=FREE, parent="a", primitives=(box,))),
    )
    with pytest.raises(MjcfError, match="free joints only on top-level bodies"):
        assemble_mjcf(free_child, {})
    cycle = Scenario(
        family="t", objective="t", success=zone,
        bodies=(Body(name="a", parent="b", primitives=(box,)), Body(name="b", parent="a", primitives=(box,))),
    )
    with pytest.raises(MjcfError, match="parent cycle"):
        assemble_mjcf(cycle, {})
    with pytest.raises(MjcfError, match="hull_counts gives 0 pieces"):
        assemble_mjcf(free_child.model_copy(update={"bodies": (Body(name="a"),)}), {})


def test_schema_checks_from_many_threads_agree(tmp_path: Path) -> None:
    """lxml schemas are not thread-safe: parallel seeds once all failed with 'Internal error'."""
    from concurrent.futures import ThreadPoolExecutor

    from scenario_lib.scene.mjcf import _load_schema

    _load_schema.cache_clear()
    good = "<mujoco><worldbody/></mujoco>"
    bad = "<mujoco><worldbody><body nosuch='1'/></worldbody></mujoco>"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda xml: check_schema(xml, SHARED_XSD), [good, bad] * 40))
    assert results[0::2] == [[]] * 40
    assert all(len(errors) == 1 and "nosuch" in errors[0] for errors in results[1::2])
