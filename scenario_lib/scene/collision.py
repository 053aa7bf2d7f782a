"""Collision geometry: convex decomposition of concave parts and a convexity measure.

MuJoCo collides every mesh as its convex hull, so a concave part (a block with a hole) needs either
primitives or several convex pieces. CoACD gives those pieces; it costs seconds per part, so results
are cached on disk by content. Meshes travel as binary STL bytes in millimetres (body frame).

This module must not import build123d: it runs in the trusted parent, which never loads CAD code.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from scenario_lib.contract import Body, Collision, Scenario
from scenario_lib.errors import GeometryError

DEFAULT_THRESHOLD = 0.02
# Fixed so the same mesh always decomposes into the same pieces (CoACD's search is randomized).
COACD_SEED = 0
# Bumped when the decomposition parameters or the piece filter change, to invalidate old cache entries.
_CACHE_FORMAT = 1
# MuJoCo refuses degenerate hulls ("coplanar vertices"); a tetrahedron is the smallest solid and still
# too thin to be useful, so pieces need more vertices than this.
_MIN_PIECE_VERTICES = 4
_MIN_PIECE_VOLUME_MM3 = 1e-3
_STL_HEADER = b"scenario_lib convex piece".ljust(80, b" ")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def effective_collision(body: Body) -> Collision:
    """The collision mode actually used for ``body``: AUTO becomes PRIMITIVES or DECOMPOSE."""
    if body.collision is Collision.AUTO:
        return Collision.PRIMITIVES if body.primitives else Collision.DECOMPOSE
    return body.collision


def read_stl(stl_bytes: bytes) -> tuple[FloatArray, IntArray]:
    """Parse a binary STL into (vertices, triangles) with coincident vertices merged."""
    if len(stl_bytes) < 84:
        raise GeometryError(f"STL data is {len(stl_bytes)} bytes, shorter than a binary STL header (84)")
    (count,) = struct.unpack_from("<I", stl_bytes, 80)
    expected = 84 + 50 * count
    if count == 0 or len(stl_bytes) != expected:
        raise GeometryError(
            f"not a binary STL: header says {count} triangles ({expected} bytes) but got {len(stl_bytes)} bytes; "
            "export with build123d's export_stl (binary by default)"
        )
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    corners = np.frombuffer(stl_bytes, dtype=record, count=count, offset=84)["corners"].reshape(-1, 3)
    # STL repeats each corner per triangle; exact float32 equality merges them (one tessellation).
    vertices, inverse = np.unique(corners, axis=0, return_inverse=True)
    return vertices.astype(np.float64), inverse.reshape(-1, 3).astype(np.int64)


def write_stl(vertices: FloatArray, triangles: IntArray) -> bytes:
    """Encode (vertices, triangles) as binary STL with outward normals from the winding."""
    corners = vertices[triangles].astype(np.float32)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    rows = np.zeros(len(triangles), dtype=record)
    rows["normal"] = normals
    rows["corners"] = corners
    return _STL_HEADER + struct.pack("<I", len(triangles)) + rows.tobytes()


def mesh_volume(vertices: FloatArray, triangles: IntArray) -> float:
    """Signed volume enclosed by a closed, outward-wound triangle mesh (mm³ for mm input)."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def euler_characteristic(triangles: IntArray) -> int:
    """V - E + F of a triangle mesh: 2 for a closed mesh without through holes, 2 - 2g with g holes."""
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    n_edges = len(np.unique(edges, axis=0))
    n_vertices = len(np.unique(triangles))
    return int(n_vertices - n_edges + len(triangles))


def convexity_ratio(stl_bytes: bytes) -> float:
    """Mesh volume divided by its convex hull volume: 1.0 for a convex part, lower when concave or holed.

    A tessellated convex solid is itself a convex polyhedron, so its ratio is 1 up to rounding.
    """
    from scipy.spatial import ConvexHull  # Imported here: scipy.spatial costs ~0.3 s to import.

    vertices, triangles = read_stl(stl_bytes)
    hull_volume = float(ConvexHull(vertices).volume)
    if hull_volume <= 0:
        raise GeometryError("mesh has zero convex hull volume (flat or degenerate); model a solid part")
    return abs(mesh_volume(vertices, triangles)) / hull_volume


def decompose_mesh(
    stl_bytes: bytes, *, threshold: float = DEFAULT_THRESHOLD, cache_dir: Path | None = None
) -> list[bytes]:
    """Split a mesh into convex pieces with CoACD and return each piece as binary STL (same units).

    Deterministic (fixed seed). Pieces MuJoCo would refuse (≤ 4 vertices, ~0 volume) are dropped.
    With ``cache_dir``, results are stored under the sha256 of the mesh bytes and parameters.
    """
    key = hashlib.sha256(
        stl_bytes + f"|coacd|threshold={threshold!r}|seed={COACD_SEED}|format={_CACHE_FORMAT}".encode()
    ).hexdigest()
    cache_path = cache_dir / f"{key}.pieces" if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        try:
            return _unpack_pieces(cache_path.read_bytes())
        except ValueError:
            pass  # A corrupt entry (should not happen with atomic writes) is recomputed and replaced.
    pieces = _run_coacd(stl_bytes, threshold)
    if cache_path is not None:
        _write_atomic(cache_path, _pack_pieces(pieces))
    return pieces


def collision_meshes(
    scenario: Scenario, meshes: Mapping[str, bytes], cache_dir: Path | None = None
) -> dict[str, list[bytes]]:
    """The convex pieces (binary STL, mm) of every body that collides by decomposition, keyed by body."""
    result: dict[str, list[bytes]] = {}
    for body in scenario.bodies:
        if effective_collision(body) is not Collision.DECOMPOSE:
            continue
        if body.name not in meshes:
            raise GeometryError(
                f"body {body.name!r} collides by convex decomposition but no mesh was exported for it; "
                f"meshes exist for {sorted(meshes)}"
            )
        pieces = decompose_mesh(meshes[body.name], cache_dir=cache_dir)
        if not pieces:
            raise GeometryError(
                f"convex decomposition of body {body.name!r} left no usable piece (all were degenerate); "
                "give the body collision primitives instead"
            )
        result[body.name] = pieces
    return result


def _run_coacd(stl_bytes: bytes, threshold: float) -> list[bytes]:
    import coacd  # Imported here: loads a native library and is only needed on a cache miss.

    vertices, triangles = read_stl(stl_bytes)
    coacd.set_log_level("error")
    raw = coacd.run_coacd(
        coacd.Mesh(vertices, triangles.astype(np.int32)), threshold=threshold, seed=COACD_SEED
    )
    pieces: list[bytes] = []
    for piece_vertices, piece_triangles in raw:
        piece_vertices = np.asarray(piece_vertices, dtype=np.float64)
        piece_triangles = np.asarray(piece_triangles, dtype=np.int64)
        if len(piece_vertices) <= _MIN_PIECE_VERTICES:
            continue
        if abs(mesh_volume(piece_vertices, piece_triangles)) < _MIN_PIECE_VOLUME_MM3:
            continue
        pieces.append(write_stl(piece_vertices, piece_triangles))
    return pieces


def _pack_pieces(pieces: list[bytes]) -> bytes:
    header = struct.pack("<I", len(pieces)) + b"".join(struct.pack("<Q", len(piece)) for piece in pieces)
    return header + b"".join(pieces)


def _unpack_pieces(blob: bytes) -> list[bytes]:
    if len(blob) < 4:
        raise ValueError("truncated cache entry")
    (count,) = struct.unpack_from("<I", blob, 0)
    sizes = struct.unpack_from(f"<{count}Q", blob, 4)
    offset = 4 + 8 * count
    if offset + sum(sizes) != len(blob):
        raise ValueError("cache entry size mismatch")
    pieces = []
    for size in sizes:
        pieces.append(blob[offset : offset + size])
        offset += size
    return pieces


def _write_atomic(path: Path, data: bytes) -> None:
    # Several workers may decompose the same part at once: write a private temp file, then rename
    # over the target, so a reader sees either nothing or a complete entry.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
