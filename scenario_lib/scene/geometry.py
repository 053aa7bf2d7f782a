"""Geometry checks: OCCT checks of each part, its binary STL, and mesh checks of that STL.

Two sides, two trust levels:

* `check_solid` and `export_stl` need OCCT (build123d). They run inside the sandbox, next to the untrusted
  script that built the part; their `PartCheck` crosses the sandbox boundary as JSON.
* `check_mesh` and `geometry_stage` run in the trusted parent on the STL bytes that came back. They use
  trimesh and manifold3d and never import build123d or OCP.

Heavy libraries are imported inside the functions, so importing this module stays cheap on both sides.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scenario_lib.errors import GeometryError
from scenario_lib.report import Metric, Stage, StageResult

Vec3 = tuple[float, float, float]

# Binary STL: 80-byte header, uint32 triangle count, then 50 bytes per triangle.
_STL_HEADER_BYTES = 84
_STL_TRIANGLE_BYTES = 50
# The manifold3d status of a mesh that passed every check, and of one manifold3d was not shown.
MANIFOLD_OK = "NoError"
MANIFOLD_SKIPPED = "NotChecked"
# Mesh coordinates (mm) beyond this are refused unread: no real part is a thousand kilometres across.
MAX_MESH_COORDINATE_MM = 1e9


@dataclass(frozen=True)
class PartCheck:
    """What OCCT says about one body's part (mm); computed in the sandbox, so the trusted side re-checks meshes."""

    n_solids: int
    is_valid: bool
    volume_mm3: float
    self_intersecting: bool
    bbox_min_mm: Vec3
    bbox_max_mm: Vec3
    errors: tuple[str, ...] = ()

    def to_json(self) -> str:
        """This check as a JSON object (NaN allowed: a broken shape may have no volume)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> PartCheck:
        """Parse a check that crossed the sandbox boundary, refusing anything not shaped like `to_json`'s output."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            # RecursionError: a forged check nested thousands of levels deep.
            raise GeometryError(f"part check is not valid JSON ({err}); the sandbox output is corrupt") from err
        if not isinstance(data, dict) or set(data) != _PART_CHECK_FIELDS:
            raise GeometryError(
                f"part check has fields {sorted(data) if isinstance(data, dict) else type(data).__name__}, "
                f"expected {sorted(_PART_CHECK_FIELDS)}"
            )
        errors = data["errors"]
        if not isinstance(errors, list) or not all(isinstance(item, str) for item in errors):
            raise GeometryError(f"part check field 'errors' must be a list of strings, got {errors!r:.200}")
        return cls(
            n_solids=_expect(data, "n_solids", int),
            is_valid=_expect(data, "is_valid", bool),
            volume_mm3=_expect_float(data, "volume_mm3"),
            self_intersecting=_expect(data, "self_intersecting", bool),
            bbox_min_mm=_expect_vec3(data, "bbox_min_mm"),
            bbox_max_mm=_expect_vec3(data, "bbox_max_mm"),
            errors=tuple(item[:2000] for item in errors[:20]),
        )


_PART_CHECK_FIELDS = {
    "n_solids",
    "is_valid",
    "volume_mm3",
    "self_intersecting",
    "bbox_min_mm",
    "bbox_max_mm",
    "errors",
}


def _expect(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data[key]
    # bool is a subclass of int: an int field must not accept True, nor a bool field 1.
    if type(value) is not kind:
        raise GeometryError(f"part check field {key!r} must be {kind.__name__}, got {value!r:.100}")
    return value


def _as_float(key: str, value: object) -> float:
    # JSON integers are unbounded: one too large for a float is refused, not an OverflowError.
    if type(value) not in (int, float):
        raise GeometryError(f"part check field {key!r} must be a number, got {value!r:.100}")
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError as err:
        raise GeometryError(f"part check field {key!r} holds an integer too large for a float") from err


def _expect_float(data: Mapping[str, Any], key: str) -> float:
    return _as_float(key, data[key])


def _expect_vec3(data: Mapping[str, Any], key: str) -> Vec3:
    value = data[key]
    if not isinstance(value, list) or len(value) != 3:
        raise GeometryError(f"part check field {key!r} must be 3 numbers, got {value!r:.100}")
    return (_as_float(key, value[0]), _as_float(key, value[1]), _as_float(key, value[2]))


_NAN3: Vec3 = (math.nan, math.nan, math.nan)


def is_nonempty_shape(part: Any) -> bool:
    """Whether ``part`` is a build123d shape wrapping an OCCT shape (sandbox side: imports build123d)."""
    from build123d import Shape

    return isinstance(part, Shape) and not part.is_null


def check_solid(part: Any) -> PartCheck:
    """Check a build123d Part/Solid/Compound with OCCT; a bad or empty shape is reported, never raised.

    Self-intersection uses ``BOPAlgo_ArgumentAnalyzer`` with its self-interference mode: ``is_valid``
    (BRepCheck) accepts a sweep whose profile is wider than the path's bend radius, this does not.
    """
    from OCP.BOPAlgo import BOPAlgo_ArgumentAnalyzer

    errors: list[str] = []

    def attempt(what: str, compute: Any, fallback: Any) -> Any:
        try:
            return compute()
        except Exception as err:  # OCCT raises assorted Standard_Failure subclasses on broken shapes
            errors.append(f"{what} failed: {type(err).__name__}: {err}")
            return fallback

    if not is_nonempty_shape(part):
        return PartCheck(0, False, 0.0, False, _NAN3, _NAN3, ("the part is empty or not a build123d shape",))

    n_solids = attempt("counting solids", lambda: len(part.solids()), 0)
    is_valid = attempt("BRepCheck (is_valid)", lambda: bool(part.is_valid), False)
    volume = attempt("volume", lambda: float(part.volume), math.nan)

    def bounds() -> tuple[Vec3, Vec3]:
        box = part.bounding_box()
        return (box.min.X, box.min.Y, box.min.Z), (box.max.X, box.max.Y, box.max.Z)

    bbox_min, bbox_max = attempt("bounding box", bounds, (_NAN3, _NAN3))

    def self_intersects() -> bool:
        analyzer = BOPAlgo_ArgumentAnalyzer()
        analyzer.SetShape1(part.wrapped)
        analyzer.SelfInterMode = True
        analyzer.Perform()
        return bool(analyzer.HasFaulty())

    self_intersecting = attempt("self-intersection analysis", self_intersects, True) if n_solids else False
    return PartCheck(
        n_solids=n_solids,
        is_valid=is_valid,
        volume_mm3=volume,
        self_intersecting=self_intersecting,
        bbox_min_mm=bbox_min,
        bbox_max_mm=bbox_max,
        errors=tuple(errors),
    )


def export_stl(part: Any, tolerance_mm: float = 0.05, angular_tolerance_rad: float = 0.2) -> bytes:
    """Tessellate a build123d shape and return it as binary STL (mm), byte-identical for the same part.

    ``tolerance_mm`` is an absolute chordal deflection (build123d's own ``export_stl`` uses a relative
    one). Raises `GeometryError` when the shape is empty or OCCT cannot write it.
    """
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.BRepTools import BRepTools
    from OCP.StlAPI import StlAPI_Writer

    if not is_nonempty_shape(part):
        raise GeometryError("cannot export an empty part to STL: give the body a non-empty build123d solid")
    if not (tolerance_mm > 0 and angular_tolerance_rad > 0):
        raise GeometryError(
            f"STL tolerances must be positive, got {tolerance_mm} mm and {angular_tolerance_rad} rad; try 0.05 and 0.2"
        )
    shape = part.wrapped
    # A triangulation cached on the shape by an earlier call (other tolerances) would be reused by the
    # mesher; drop it so the bytes depend only on the shape and these tolerances. Sequential meshing
    # (isInParallel=False) keeps the output independent of thread scheduling.
    BRepTools.Clean_s(shape)
    BRepMesh_IncrementalMesh(shape, tolerance_mm, False, angular_tolerance_rad, False)
    writer = StlAPI_Writer()
    writer.ASCIIMode = False
    with tempfile.TemporaryDirectory(prefix="stl-") as folder:
        # StlAPI_Writer only writes to a path.
        path = os.path.join(folder, "part.stl")
        if not writer.Write(shape, path) or not os.path.isfile(path):
            raise GeometryError(
                "OCCT could not write the part as STL (no triangles?); check the part is a closed solid"
            )
        with open(path, "rb") as handle:
            return handle.read()


@dataclass(frozen=True)
class MeshCheck:
    """What trimesh and manifold3d say about one binary STL (trusted side)."""

    triangles: int
    watertight: bool
    winding_consistent: bool
    is_volume: bool
    manifold_status: str
    volume_mm3: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.triangles > 0
            and self.watertight
            and self.winding_consistent
            and self.is_volume
            and self.manifold_status == MANIFOLD_OK
        )


def stl_triangle_count(stl_bytes: bytes) -> int:
    """Triangles in a binary STL, checking the declared count against its length; raises `GeometryError`."""
    if len(stl_bytes) < _STL_HEADER_BYTES:
        raise GeometryError(f"STL has {len(stl_bytes)} bytes, fewer than a binary STL header (84)")
    (count,) = struct.unpack_from("<I", stl_bytes, 80)
    expected = _STL_HEADER_BYTES + _STL_TRIANGLE_BYTES * count
    if len(stl_bytes) != expected:
        raise GeometryError(f"binary STL declares {count} triangles ({expected} bytes) but has {len(stl_bytes)} bytes")
    return int(count)


def check_mesh(stl_bytes: bytes) -> MeshCheck:
    """Check a binary STL: closed (watertight), consistently wound, a volume, and accepted by manifold3d."""
    import numpy as np

    try:
        count = stl_triangle_count(stl_bytes)
    except GeometryError as err:
        return MeshCheck(0, False, False, False, "NotParsed", math.nan, error=str(err))
    if count == 0:
        return MeshCheck(0, False, False, False, "NoTriangles", 0.0)
    # Degenerate meshes divide by a zero volume inside trimesh; the result is reported, not warned about.
    with np.errstate(all="ignore"):
        return _check_parsed_mesh(stl_bytes, count)


def _check_parsed_mesh(stl_bytes: bytes, count: int) -> MeshCheck:
    import manifold3d
    import numpy as np
    import trimesh

    try:
        # process=True merges duplicate vertices: STL repeats them per triangle, and watertightness
        # is only defined on shared edges.
        loaded = trimesh.load(io.BytesIO(stl_bytes), file_type="stl", process=True, force="mesh")
        if not isinstance(loaded, trimesh.Trimesh):
            raise GeometryError(f"trimesh read the STL as {type(loaded).__name__}, not one mesh")
        mesh = loaded
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        error = ""
        if not np.isfinite(vertices).all():
            error = "some vertex coordinates are NaN or infinite"
        elif len(vertices) and np.abs(vertices).max() > MAX_MESH_COORDINATE_MM:
            error = f"vertex coordinates reach {np.abs(vertices).max():.3g} mm, beyond ±{MAX_MESH_COORDINATE_MM:g} mm"
        elif len(faces) and (np.sort(faces, axis=1)[:, 1:] == np.sort(faces, axis=1)[:, :-1]).any():
            error = "some triangles repeat a vertex (degenerate triangles)"
        watertight, winding = bool(mesh.is_watertight), bool(mesh.is_winding_consistent)
        is_volume = bool(mesh.is_volume)
        status = MANIFOLD_SKIPPED
        # manifold3d crashes the whole process (SIGSEGV) on some degenerate meshes, and these bytes may be
        # forged by the script: it only sees meshes trimesh already found closed, finite and non-degenerate.
        if not error and watertight and winding and is_volume:
            manifold = manifold3d.Manifold(
                manifold3d.Mesh(
                    vert_properties=np.ascontiguousarray(vertices, dtype=np.float32),
                    tri_verts=np.ascontiguousarray(faces, dtype=np.uint32),
                )
            )
            status = manifold.status().name
        return MeshCheck(
            triangles=count,
            watertight=watertight,
            winding_consistent=winding,
            is_volume=is_volume,
            manifold_status=str(status),
            volume_mm3=float(mesh.volume),
            error=error,
        )
    except Exception as err:  # trimesh/manifold3d raise assorted errors on degenerate meshes
        return MeshCheck(count, False, False, False, "Error", math.nan, error=f"{type(err).__name__}: {err}")


def _part_problems(name: str, check: PartCheck) -> list[str]:
    if check.n_solids == 0:
        return [
            f"body {name!r} is empty: its part holds no solid (an open shell, a face or an empty shape?); "
            "build a closed solid, e.g. extrude a closed sketch or use Box/Cylinder"
        ]
    problems: list[str] = []
    if not check.is_valid:
        detail = f" ({'; '.join(check.errors)})" if check.errors else ""
        problems.append(
            f"body {name!r} is not a valid OCCT solid (BRepCheck failed{detail}); avoid zero-thickness walls, "
            "coincident faces and tiny edges, or call part.fix()"
        )
    if not math.isfinite(check.volume_mm3) or check.volume_mm3 <= 0:
        problems.append(
            f"body {name!r} has volume {check.volume_mm3:.6g} mm³ (must be > 0): the solid is inside-out or "
            "degenerate; rebuild it from a closed sketch with positive extent"
        )
    if check.self_intersecting:
        problems.append(
            f"body {name!r} self-intersects (BOPAlgo_ArgumentAnalyzer): e.g. a sweep whose profile is wider "
            "than the path's bend radius, or overlapping solids in one compound; enlarge the bend radius, "
            "shrink the profile, or fuse the solids"
        )
    return problems


def _mesh_problems(name: str, check: MeshCheck) -> list[str]:
    if check.error:
        return [f"body {name!r} has an unreadable mesh: {check.error}; export the part with build123d's export_stl"]
    if check.triangles == 0:
        return [f"body {name!r} tessellated to an empty mesh (0 triangles); give it a non-empty closed solid"]
    problems: list[str] = []
    if not check.watertight:
        problems.append(f"body {name!r} has an open mesh (not watertight): close every face of the solid")
    if not check.winding_consistent:
        problems.append(f"body {name!r} has inconsistently wound triangles (flipped faces); rebuild the solid")
    if check.watertight and check.winding_consistent and not check.is_volume:
        problems.append(f"body {name!r} mesh does not bound a volume (inside-out or degenerate); rebuild the solid")
    if check.manifold_status not in (MANIFOLD_OK, MANIFOLD_SKIPPED):
        problems.append(
            f"body {name!r} mesh is not manifold (manifold3d status {check.manifold_status}): edges shared by "
            "more or fewer than two faces; fuse touching solids and close open edges"
        )
    return problems


def geometry_stage(part_checks: Mapping[str, PartCheck], meshes: Mapping[str, bytes]) -> StageResult:
    """The GEOMETRY stage: every body is a non-empty, valid, closed, non-self-intersecting solid.

    Fails naming each bad body and what to do; metrics per body (``<body>.volume_mm3``,
    ``<body>.triangles``, ...) are recorded either way.
    """
    started = time.perf_counter()
    problems: list[str] = []
    metrics: dict[str, Metric] = {}
    names = list(part_checks) + [name for name in meshes if name not in part_checks]
    if not names:
        problems.append("the scenario has no bodies with geometry; return at least one body with a solid part")
    for name in names:
        check = part_checks.get(name)
        stl = meshes.get(name)
        if check is None or stl is None:
            problems.append(f"body {name!r} has no {'part check' if check is None else 'mesh'}; the build lost it")
            continue
        metrics[f"{name}.n_solids"] = check.n_solids
        metrics[f"{name}.volume_mm3"] = round(check.volume_mm3, 6) if math.isfinite(check.volume_mm3) else -1.0
        metrics[f"{name}.is_valid"] = check.is_valid
        metrics[f"{name}.self_intersecting"] = check.self_intersecting
        part_problems = _part_problems(name, check)
        problems.extend(part_problems)
        if check.n_solids == 0 and not stl:
            continue  # an empty part has no mesh either; one message says it
        mesh_check = check_mesh(stl)
        metrics[f"{name}.triangles"] = mesh_check.triangles
        metrics[f"{name}.watertight"] = mesh_check.watertight
        problems.extend(_mesh_problems(name, mesh_check))
    duration_s = round(time.perf_counter() - started, 4)
    if problems:
        return StageResult.failing(Stage.GEOMETRY, "; ".join(problems), metrics, duration_s)
    return StageResult.passing(Stage.GEOMETRY, metrics, duration_s)
