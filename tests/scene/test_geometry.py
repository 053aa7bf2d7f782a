"""Geometry checks on real build123d solids (OCCT side) and their STL meshes (trusted side)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from build123d import Box, CenterArc, Circle, Cylinder, Part, Plane, Shell, Solid, sweep

from scenario_lib.errors import GeometryError
from scenario_lib.scene.geometry import (
    MANIFOLD_OK,
    PartCheck,
    check_mesh,
    check_solid,
    export_stl,
    geometry_stage,
    stl_triangle_count,
)
from scenario_lib.report import Stage, Verdict
from tests.support import REPO



def self_intersecting_sweep() -> Solid:
    """A 3 mm-radius tube swept along a 2 mm-radius arc: BRepCheck calls it valid, it is not."""
    arc = CenterArc((0, 0), 2.0, 0, 270)
    return sweep(Plane(origin=arc @ 0, z_dir=arc % 0) * Circle(3), path=arc)


def stl_of(mesh: object) -> bytes:
    buffer = io.BytesIO()
    mesh.export(buffer, file_type="stl")  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_box_checks_report_volume_and_bounds() -> None:
    check = check_solid(Box(10, 20, 30))

    assert check.n_solids == 1 and check.is_valid and not check.self_intersecting and not check.errors
    assert check.volume_mm3 == pytest.approx(6000.0, rel=1e-9)
    assert check.bbox_min_mm == pytest.approx((-5, -10, -15)) and check.bbox_max_mm == pytest.approx((5, 10, 15))


def test_part_check_round_trips_through_json() -> None:
    check = check_solid(Cylinder(5, 10))

    assert PartCheck.from_json(check.to_json()) == check
    empty = check_solid(Part())
    restored = PartCheck.from_json(empty.to_json())
    assert restored.n_solids == 0 and math.isnan(restored.bbox_min_mm[0])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(n_solids=True),
        lambda d: d.update(is_valid=1),
        lambda d: d.update(volume_mm3="big"),
        lambda d: d.update(bbox_min_mm=[0, 0]),
        lambda d: d.update(errors="x"),
        lambda d: d.update(extra=1),
        lambda d: d.pop("self_intersecting"),
    ],
    ids=["bool-as-int", "int-as-bool", "string-volume", "short-bbox", "errors-not-list", "extra-field", "missing"],
)
def test_part_check_from_json_refuses_malformed_input(tamper: object) -> None:
    data = json.loads(check_solid(Box(1, 1, 1)).to_json())
    tamper(data)  # type: ignore[operator]

    with pytest.raises(GeometryError, match="part check"):
        PartCheck.from_json(json.dumps(data))


def test_self_intersecting_sweep_is_caught_only_by_the_argument_analyzer() -> None:
    sweep_part = self_intersecting_sweep()
    check = check_solid(sweep_part)

    assert check.is_valid and check.n_solids == 1 and check.volume_mm3 > 0  # BRepCheck is fooled
    assert check.self_intersecting
    assert check_mesh(export_stl(sweep_part)).ok  # and so are the mesh checks
    stage = geometry_stage({"hook": check}, {"hook": export_stl(sweep_part)})
    assert stage.verdict is Verdict.FAIL and "body 'hook' self-intersects" in stage.message
    assert stage.metrics["hook.self_intersecting"] is True


def test_bad_shapes_are_reported_not_raised() -> None:
    for bad in (Part(), None, "not a shape"):
        check = check_solid(bad)
        assert check.n_solids == 0 and not check.is_valid and check.errors


def test_open_shell_fails_as_empty_and_open() -> None:
    shell = Shell(Box(5, 5, 5).faces()[:-1])
    check = check_solid(shell)
    mesh = export_stl(shell)

    assert check.n_solids == 0
    assert not check_mesh(mesh).watertight
    stage = geometry_stage({"lid": check}, {"lid": mesh})
    assert stage.verdict is Verdict.FAIL
    assert "body 'lid' is empty" in stage.message and "body 'lid' has an open mesh" in stage.message


def test_inside_out_solid_fails_on_volume() -> None:
    inside_out = Solid(Box(10, 10, 10).wrapped.Reversed())
    check = check_solid(inside_out)

    assert check.volume_mm3 == pytest.approx(-1000.0)
    stage = geometry_stage({"cube": check}, {"cube": export_stl(inside_out)})
    assert stage.verdict is Verdict.FAIL and "body 'cube' has volume -1000 mm³" in stage.message
    assert "does not bound a volume" in stage.message


def test_export_stl_is_deterministic_and_uses_absolute_tolerance() -> None:
    cylinder = Cylinder(10, 20)
    fine = export_stl(cylinder, 0.05, 0.2)
    export_stl(cylinder, 1.0, 0.5)  # a coarser triangulation cached on the shape must not leak

    assert export_stl(cylinder, 0.05, 0.2) == fine
    assert stl_triangle_count(fine) > stl_triangle_count(export_stl(cylinder, 0.05, 0.5))
    mesh = check_mesh(fine)
    assert mesh.ok and mesh.volume_mm3 == pytest.approx(math.pi * 100 * 20, rel=0.02)
    with pytest.raises(GeometryError, match="empty part"):
        export_stl(Part())
    with pytest.raises(GeometryError, match="positive"):
        export_stl(cylinder, 0.0, 0.2)


def test_check_mesh_catches_flipped_inverted_and_truncated_meshes() -> None:
    import trimesh

    box = trimesh.creation.box(extents=(10, 10, 10))
    flipped_faces = box.faces.copy()
    flipped_faces[:3] = flipped_faces[:3, ::-1]
    flipped = check_mesh(stl_of(trimesh.Trimesh(box.vertices, flipped_faces, process=False)))
    inverted_box = box.copy()
    inverted_box.invert()
    inverted = check_mesh(stl_of(inverted_box))
    good = stl_of(box)
    truncated = check_mesh(good[:-10])

    assert check_mesh(good).ok and check_mesh(good).manifold_status == MANIFOLD_OK
    assert not flipped.winding_consistent and not flipped.ok
    assert inverted.watertight and not inverted.is_volume and not inverted.ok
    assert truncated.error and "declares 12 triangles" in truncated.error
    assert check_mesh(b"").error


def test_geometry_stage_passes_good_bodies_with_metrics() -> None:
    parts = {"base": Box(100, 100, 10), "peg": Cylinder(4, 30)}

    stage = geometry_stage(
        {name: check_solid(part) for name, part in parts.items()},
        {name: export_stl(part) for name, part in parts.items()},
    )

    assert stage.stage is Stage.GEOMETRY and stage.passed, stage.message
    assert stage.metrics["base.volume_mm3"] == pytest.approx(100_000)
    assert stage.metrics["base.triangles"] == 12 and int(stage.metrics["peg.triangles"]) > 12
    assert stage.metrics["peg.watertight"] is True


def test_geometry_stage_names_missing_meshes_and_empty_scenarios() -> None:
    check = check_solid(Box(1, 1, 1))

    assert "body 'a' has no mesh" in geometry_stage({"a": check}, {}).message
    assert "no bodies" in geometry_stage({}, {}).message


def test_mesh_side_does_not_import_build123d(tmp_path: Path) -> None:
    probe = (
        "import sys, io, trimesh\n"
        "from scenario_lib.scene.geometry import check_mesh, geometry_stage\n"
        "buffer = io.BytesIO(); trimesh.creation.box().export(buffer, file_type='stl')\n"
        "assert check_mesh(buffer.getvalue()).ok\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('build123d', 'OCP')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
