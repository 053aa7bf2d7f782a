"""Convex decomposition, convexity and STL handling on real build123d meshes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder
from build123d import Part, Pos

from conftest import export_meshes, load_script
from scenario_lib.scene.collision import (
    collision_meshes,
    convexity_ratio,
    decompose_mesh,
    effective_collision,
    euler_characteristic,
    mesh_volume,
    read_stl,
)
from scenario_lib.contract import FREE, Body, Box, Collision, InsideZone, Scenario, Zone
from scenario_lib.errors import GeometryError


def _stl(part: Part, tmp_path: Path, name: str = "part") -> bytes:
    scenario = Scenario(
        family="t", objective="t", bodies=(Body(name=name, part=part),),
        success=InsideZone(body=name, zone=Zone(name="z", center_mm=(0, 0, 0), half_extents_mm=(1, 1, 1))),
    )
    return export_meshes(scenario, tmp_path)[name]


def _l_block() -> Part:
    # 40x20x20 block minus a 20x20x10 notch: volume 12000 mm³; the hull adds a 20x10/2 x 20 wedge (2000).
    return SolidBox(40, 20, 20) - Pos(10, 0, 5) * SolidBox(20, 20, 10)


@pytest.mark.parametrize(
    ("collision", "primitives", "expected"),
    [
        (Collision.AUTO, (), Collision.DECOMPOSE),
        (Collision.AUTO, (Box(half_size_mm=(1, 1, 1)),), Collision.PRIMITIVES),
        (Collision.HULL, (), Collision.HULL),
        (Collision.DECOMPOSE, (Box(half_size_mm=(1, 1, 1)),), Collision.DECOMPOSE),
    ],
    ids=["auto-mesh", "auto-primitives", "hull", "decompose"],
)
def test_effective_collision(collision: Collision, primitives: tuple[Box, ...], expected: Collision) -> None:
    assert effective_collision(Body(name="b", collision=collision, primitives=primitives)) is expected


def test_read_stl_merges_vertices_and_measures_volume(tmp_path: Path) -> None:
    vertices, triangles = read_stl(_stl(SolidBox(20, 30, 40), tmp_path))
    assert len(vertices) == 8 and len(triangles) == 12
    assert mesh_volume(vertices, triangles) == pytest.approx(24000.0, rel=1e-6)
    assert euler_characteristic(triangles) == 2


def test_read_stl_rejects_garbage() -> None:
    with pytest.raises(GeometryError, match="binary STL"):
        read_stl(b"solid ascii\nendsolid\n" + b" " * 100)


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (SolidBox(20, 30, 40), 1.0),
        (SolidCylinder(10, 30), 1.0),
        (_l_block(), 12000 / 14000),
        # The holed block of broken_peg_on_hull: 1 - hole / block volume.
        (load_script("broken_peg_on_hull")(0, (1, 1, 1)).body("block").part, 1 - (22 * 22 * 20) / (60 * 60 * 40)),
    ],
    ids=["box", "cylinder", "l-block", "holed-block"],
)
def test_convexity_ratio(part: Part, expected: float, tmp_path: Path) -> None:
    assert convexity_ratio(_stl(part, tmp_path)) == pytest.approx(expected, abs=2e-3)


def test_decompose_l_block_into_convex_pieces(tmp_path: Path) -> None:
    stl = _stl(_l_block(), tmp_path)
    started = time.perf_counter()
    pieces = decompose_mesh(stl)
    elapsed = time.perf_counter() - started
    assert 2 <= len(pieces) <= 6, f"{len(pieces)} pieces in {elapsed:.2f} s"
    total = 0.0
    for piece in pieces:
        vertices, triangles = read_stl(piece)
        assert len(vertices) > 4
        assert convexity_ratio(piece) == pytest.approx(1.0, abs=1e-3)
        total += mesh_volume(vertices, triangles)
    # The pieces cover the part: their volume matches the L (not its 14000 mm³ hull) within a few %.
    assert total == pytest.approx(12000.0, rel=0.05)
    assert decompose_mesh(stl) == pieces, "CoACD with a fixed seed must be deterministic"


def test_decompose_cache_round_trip(tmp_path: Path) -> None:
    stl = _stl(_l_block(), tmp_path / "stl")
    cache = tmp_path / "cache"
    first = decompose_mesh(stl, cache_dir=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".pieces"
    started = time.perf_counter()
    assert decompose_mesh(stl, cache_dir=cache) == first
    assert time.perf_counter() - started < 0.1
    # Another threshold is another key.
    decompose_mesh(stl, threshold=0.05, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    # A corrupt entry is recomputed, not trusted.
    entries[0].write_bytes(b"\x01\x00")
    assert decompose_mesh(stl, cache_dir=cache) == first


def test_collision_meshes_only_for_decomposed_bodies(tmp_path: Path, decomposition_cache: Path) -> None:
    scenario = Scenario(
        family="t", objective="t",
        bodies=(
            Body(name="slab", part=SolidBox(100, 100, 10), primitives=(Box(half_size_mm=(50, 50, 5)),)),
            Body(name="l_block", part=_l_block(), motion=FREE),
            Body(name="convex", part=SolidBox(10, 10, 10), motion=FREE, collision=Collision.HULL),
        ),
        success=InsideZone(body="l_block", zone=Zone(name="z", center_mm=(0, 0, 0), half_extents_mm=(1, 1, 1))),
    )
    meshes = export_meshes(scenario, tmp_path)
    hulls = collision_meshes(Scenario.model_validate_json(scenario.model_dump_json()), meshes, decomposition_cache)
    assert sorted(hulls) == ["l_block"]
    with pytest.raises(GeometryError, match="no mesh was exported"):
        collision_meshes(scenario, {"slab": meshes["slab"]}, decomposition_cache)


def test_holed_block_decomposition_keeps_the_hole_open(
    build_scene: Callable[..., object], decomposition_cache: Path
) -> None:
    """No convex piece may fill the hole: the peg's footprint below the rim must stay free."""
    scene = build_scene("broken_peg_on_hull", block_collision=Collision.DECOMPOSE)
    pieces = scene.hulls["block"]  # type: ignore[attr-defined]
    assert 4 <= len(pieces) <= 40
    # Points on a 9.5 mm circle (the peg's radius) inside the hole, 1..19 mm below the 40 mm top face.
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    probes = np.array([(9.5 * np.cos(a), 9.5 * np.sin(a), z) for a in angles for z in (21.0, 30.0, 39.0)])
    for piece in pieces:
        vertices, triangles = read_stl(piece)
        corners = vertices[triangles]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        # Inside a convex piece = behind every face plane.
        offsets = np.einsum("ij,ij->i", normals, corners[:, 0])
        inside = (probes @ normals.T - offsets < -1e-6).all(axis=1)
        assert not inside.any(), f"a convex piece fills the hole at {probes[inside][0]} mm"


def test_collision_module_does_not_import_build123d() -> None:
    code = "import sys, scenario_lib.scene.collision as c; c.convexity_ratio; print('build123d' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
