"""A scenario's descriptor (its geometry and its normalized parameters) and the distance between two.

Computed from a scenario folder's stored files only (``scene.xml``, ``meshes/*.stl``, ``manifest.json``),
never by running its script. The descriptor is

* the **family** (scenarios of different families are infinitely far apart);
* one **feature vector per body** (`BODY_FEATURES`), from its visual mesh placed in the world frame:
  the logs of its equivalent cube side, of its world-axis extents and of its three principal radii of
  gyration (so a difference of 0.01 is a 1 % change of size), its solidity and compactness (shape
  statistics in [0, 1]), and the position of its centroid relative to the centre of the scene's bounding
  box, as a fraction of the box's diagonal. Nothing in the vector is a name, and every position is
  relative to the scene, so renaming bodies or translating the whole scene leaves the descriptor as it was;
  the vectors are sorted and compared as a multiset (an optimal one-to-one matching of bodies), so the
  order of the bodies in the scene does not matter either;
* the **parameters**, normalized: ``(value - low) / (high - low)`` for a parameter whose range is known,
  and ``asinh(value)`` otherwise, plus the scale per axis as ``log(s) / log(4)`` (4 = the width, as a
  ratio, of the default scale limits 0.5-2). A scenario folder does not store its script's
  ``parameter_ranges``, so the known ranges are those of the offline author's family templates
  (``RANGES`` in ``scenario_lib/authoring/families/<family>.py``, read as a literal, not imported),
  by family and parameter name. ``asinh`` changes by about the relative change for large values (a
  1 % change of 30 mm is 0.01) and by the absolute change for small ones.

`scenario_distance` is the root mean square of a geometry part (the RMS over matched bodies of their
features' RMS difference; a body without a match counts 1) and a parameter part (the RMS of the
normalized parameters' differences; a parameter only one side has counts 1). Both are in "fractions":
a copy whose every parameter moved by 1 % of its range is about 0.01 away.
"""

from __future__ import annotations

import ast
import io
import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from scenario_lib.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import numpy as np
    import trimesh

DESCRIPTOR_FORMAT_VERSION = 1
BODY_FEATURES: tuple[str, ...] = (
    "log_size_mm",  # log of the equivalent cube side, volume ** (1/3)
    "log_extent_x_mm",
    "log_extent_y_mm",
    "log_extent_z_mm",
    "log_gyration_1_mm",  # principal radii of gyration, ascending
    "log_gyration_2_mm",
    "log_gyration_3_mm",
    "solidity",  # volume / convex hull volume
    "compactness",  # 36 pi V^2 / A^3: 1 for a ball, about 0.52 for a cube
    "relative_x",  # centroid - scene box centre, over the scene box diagonal
    "relative_y",
    "relative_z",
)
SCALE_PARAMETERS: tuple[str, ...] = ("scale_x", "scale_y", "scale_z")
_SCALE_LOG_WIDTH = math.log(4.0)
# Extents get 1 mm added before the log so that a flat part (a 0.1 mm sheet) does not dominate.
_EXTENT_FLOOR_MM = 1.0
_DIGITS = 6
_HULL_FILE = re.compile(r"_hull\d+\.stl$")


class ScenarioDescriptor(BaseModel):
    """What near-duplicate detection compares: the family, one feature vector per body, normalized parameters."""

    model_config = ConfigDict(frozen=True)

    format_version: int = DESCRIPTOR_FORMAT_VERSION
    family: str
    bodies: tuple[tuple[float, ...], ...] = Field(description="One vector of BODY_FEATURES per body, sorted.")
    parameters: dict[str, float] = Field(default_factory=dict, description="Normalized parameters and scale.")


# --- parameters ------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def family_parameter_ranges(family: str) -> Mapping[str, tuple[float, float]]:
    """``{name: (low, high)}`` of the offline author's template for `family`; empty for an unknown family."""
    from scenario_lib.authoring.offline import template_source

    try:
        source = template_source(family)
    except ConfigError:
        return {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "RANGES" for t in node.targets):
            ranges = ast.literal_eval(node.value)
            return {str(name): (float(spec[0]), float(spec[1])) for name, spec in ranges.items()}
    return {}


def normalize_parameters(
    family: str,
    parameters: Mapping[str, float],
    scale: Sequence[float],
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Each parameter as a fraction of its range (`ranges`, default: the family template's), else ``asinh``;
    plus the scale per axis as ``log(s) / log(4)``."""
    known = family_parameter_ranges(family) if ranges is None else ranges
    normalized: dict[str, float] = {}
    for name, value in parameters.items():
        low, high = known.get(name, (0.0, 0.0))
        normalized[name] = (value - low) / (high - low) if high > low else math.asinh(value)
    for name, factor in zip(SCALE_PARAMETERS, scale):
        normalized[name] = math.log(factor) / _SCALE_LOG_WIDTH
    return {name: round(value, _DIGITS) for name, value in sorted(normalized.items())}


# --- geometry --------------------------------------------------------------------------------------------


def _vector(text: str | None, default: tuple[float, ...], what: str) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        values = tuple(float(item) for item in text.split())
    except ValueError as err:
        raise StoreError(
            f"scene.xml has a non-numeric {what} {text!r}; re-validate the scenario to rewrite it"
        ) from err
    if len(values) != len(default):
        raise StoreError(f"scene.xml has a {what} {text!r} with {len(values)} numbers, expected {len(default)}")
    return values


def _frame(element: ElementTree.Element, *, intrinsic_euler: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rotation matrix, translation in m) of a body or geom element: ``pos`` with ``euler`` (degrees) or ``quat``."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    position = np.array(_vector(element.get("pos"), (0.0, 0.0, 0.0), "pos"))
    if element.get("quat") is not None:
        w, x, y, z = _vector(element.get("quat"), (1.0, 0.0, 0.0, 0.0), "quat")
        rotation = Rotation.from_quat([x, y, z, w]).as_matrix()
    else:
        euler = _vector(element.get("euler"), (0.0, 0.0, 0.0), "euler")
        # MuJoCo's lower-case eulerseq rotates about the moving axes (intrinsic): scipy spells that in capitals.
        rotation = Rotation.from_euler("XYZ" if intrinsic_euler else "xyz", euler, degrees=True).as_matrix()
    return rotation, position


def _load_mesh(data: bytes, file: str) -> trimesh.Trimesh:
    import trimesh

    try:
        mesh = trimesh.load(io.BytesIO(data), file_type="stl", force="mesh")
    except Exception as err:  # trimesh raises assorted types for a broken STL
        raise StoreError(f"mesh {file} is not a readable STL ({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise StoreError(f"mesh {file} holds no triangles; re-validate the scenario to rewrite its meshes")
    return mesh


def _offsets(parts: Sequence[trimesh.Trimesh]) -> list[int]:
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += len(part.vertices)
    return offsets


def _world_meshes(scene_xml: str, meshes: Mapping[str, bytes]) -> list[trimesh.Trimesh]:
    """Each body's visual mesh(es), merged per body, in the world frame, in mm."""
    import numpy as np
    import trimesh

    try:
        root = ElementTree.fromstring(scene_xml)
    except ElementTree.ParseError as err:
        raise StoreError(f"scene.xml is not valid XML ({err}); re-validate the scenario to rewrite it") from err
    compiler = root.find("compiler")
    if compiler is not None and compiler.get("angle", "degree") != "degree":
        raise StoreError("scene.xml uses radians (compiler angle != 'degree'); only the assembler's degrees are read")
    intrinsic = (compiler.get("eulerseq", "xyz") if compiler is not None else "xyz") == "xyz"
    assets: dict[str, tuple[str, tuple[float, ...]]] = {}
    for mesh in root.iter("mesh"):
        name, file = mesh.get("name"), mesh.get("file")
        if name and file:
            assets[name] = (file, _vector(mesh.get("scale"), (1.0, 1.0, 1.0), "mesh scale"))
    worldbody = root.find("worldbody")
    if worldbody is None:
        raise StoreError("scene.xml has no <worldbody>; re-validate the scenario to rewrite it")

    placed: list[trimesh.Trimesh] = []

    def visit(element: ElementTree.Element, rotation: np.ndarray, translation: np.ndarray) -> None:
        for body in element.findall("body"):
            local_rotation, local_translation = _frame(body, intrinsic_euler=intrinsic)
            body_rotation, body_translation = rotation @ local_rotation, rotation @ local_translation + translation
            parts = []
            for geom in body.findall("geom"):
                asset = assets.get(geom.get("mesh", ""))
                if geom.get("type") != "mesh" or asset is None or _HULL_FILE.search(asset[0]):
                    continue  # primitives and convex hulls are collision shapes; the visual mesh is the part
                file, mesh_scale = asset
                if file not in meshes:
                    raise StoreError(f"scene.xml names {file}, which the scenario folder does not hold")
                geom_rotation, geom_translation = _frame(geom, intrinsic_euler=intrinsic)
                mesh = _load_mesh(meshes[file], file)
                vertices = np.asarray(mesh.vertices) * np.array(mesh_scale)
                world = (vertices @ geom_rotation.T + geom_translation) @ body_rotation.T + body_translation
                parts.append(trimesh.Trimesh(vertices=world * 1000.0, faces=mesh.faces, process=False))
            if len(parts) == 1:
                placed.append(parts[0])
            elif parts:
                # One body, several visual meshes: one solid for the features (concatenate keeps every face).
                placed.append(
                    trimesh.Trimesh(
                        vertices=np.vstack([part.vertices for part in parts]),
                        faces=np.vstack([part.faces + offset for part, offset in zip(parts, _offsets(parts))]),
                        process=False,
                    )
                )
            visit(body, body_rotation, body_translation)

    visit(worldbody, np.eye(3), np.zeros(3))
    if not placed:
        raise StoreError("scene.xml places no body with a visual mesh; re-validate the scenario to rewrite it")
    return placed


def _body_features(mesh: trimesh.Trimesh, centre_mm: np.ndarray, diagonal_mm: float) -> tuple[float, ...]:
    import numpy as np

    hull = mesh.convex_hull
    volume = abs(float(mesh.volume)) if mesh.is_volume else float(hull.volume)
    volume = max(volume, 1e-9)
    extents = mesh.bounds[1] - mesh.bounds[0]
    centroid = np.asarray(mesh.center_mass if mesh.is_volume else hull.center_mass)
    inertia = np.asarray(mesh.moment_inertia if mesh.is_volume else hull.moment_inertia)  # density 1, about centroid
    moments = np.clip(np.sort(np.linalg.eigvalsh(inertia)), 1e-12, None)
    gyration = np.sqrt(moments / volume)
    area = max(float(mesh.area), 1e-9)
    solidity = min(1.0, volume / max(float(hull.volume), 1e-9))
    compactness = min(1.0, 36.0 * math.pi * volume**2 / area**3)
    relative = (centroid - centre_mm) / diagonal_mm
    values = (
        math.log(volume) / 3.0,
        *(math.log(float(extent) + _EXTENT_FLOOR_MM) for extent in extents),
        *(math.log(float(radius)) for radius in gyration),
        solidity,
        compactness,
        *(float(value) for value in relative),
    )
    return tuple(round(value, _DIGITS) for value in values)


def describe_scenario(
    *,
    family: str,
    parameters: Mapping[str, float],
    scale: Sequence[float],
    scene_xml: str,
    meshes: Mapping[str, bytes],
) -> ScenarioDescriptor:
    """The descriptor of a scenario from its stored files: ``scene.xml`` and ``{"meshes/x.stl": bytes}``.

    Raises `StoreError` naming the file when the scene or a mesh it names cannot be read.
    """
    import numpy as np

    placed = _world_meshes(scene_xml, meshes)
    low = np.min([mesh.bounds[0] for mesh in placed], axis=0)
    high = np.max([mesh.bounds[1] for mesh in placed], axis=0)
    centre, diagonal = (low + high) / 2.0, max(float(np.linalg.norm(high - low)), 1e-9)
    bodies = sorted(_body_features(mesh, centre, diagonal) for mesh in placed)
    return ScenarioDescriptor(
        family=family, bodies=tuple(bodies), parameters=normalize_parameters(family, parameters, scale)
    )


# --- distance --------------------------------------------------------------------------------------------


def _geometry_distance(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    if not a or not b:
        return 0.0 if len(a) == len(b) else 1.0
    left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    # Mean square feature difference of every pair of bodies; the optimal matching ignores names and order.
    cost = np.mean((left[:, None, :] - right[None, :, :]) ** 2, axis=2)
    rows, cols = linear_sum_assignment(cost)
    unmatched = abs(len(a) - len(b))
    return math.sqrt((float(cost[rows, cols].sum()) + unmatched) / max(len(a), len(b)))


def _parameter_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    names = set(a) | set(b)
    if not names:
        return 0.0
    squares = [(a[name] - b[name]) ** 2 if name in a and name in b else 1.0 for name in names]
    return math.sqrt(sum(squares) / len(squares))


def scenario_distance(a: ScenarioDescriptor, b: ScenarioDescriptor, *, limit: float = math.inf) -> float:
    """How far apart two scenarios are (0: the same scene); ``inf`` between different families.

    With `limit`, a pair whose parameters alone put it farther than `limit` returns ``inf`` without the
    (costlier) body matching: the parameter part bounds the distance from below.
    """
    if a.family != b.family:
        return math.inf
    parameters = _parameter_distance(a.parameters, b.parameters)
    if parameters / math.sqrt(2.0) > limit:
        return math.inf
    geometry = _geometry_distance(a.bodies, b.bodies)
    return math.sqrt((geometry**2 + parameters**2) / 2.0)


__all__ = [
    "BODY_FEATURES",
    "DESCRIPTOR_FORMAT_VERSION",
    "SCALE_PARAMETERS",
    "ScenarioDescriptor",
    "describe_scenario",
    "family_parameter_ranges",
    "normalize_parameters",
    "scenario_distance",
]
