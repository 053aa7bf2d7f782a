"""MJCF: assemble a deterministic MuJoCo model from a `Scenario`, then validate and compile it.

Conventions of the generated model:

* Units. CAD is in millimetres; MuJoCo in SI. Meshes keep their mm coordinates and get
  ``scale="0.001 0.001 0.001"``; every position and primitive size is written in metres.
  Angles stay in degrees (``<compiler angle="degree">``) with MuJoCo's default intrinsic ``xyz``
  Euler sequence, which is the contract's convention.
* Files. The scene folder holds the MJCF and ``meshes/<body>.stl`` (visual mesh, carries the mass)
  plus ``meshes/<body>_hull<k>.stl`` (convex pieces of a decomposed body).
* Geoms. Each body has one visual mesh geom (group 1, no contacts) whose ``density`` gives the
  body's mass and inertia from the exact mesh volume (``inertia="exact"``; MuJoCo 4 refuses
  inside-out meshes but NOT open ones, which get a wrong mass: watertightness is the geometry stage's job),
  and massless collision geoms (group 3): primitives, convex pieces, or the mesh itself for HULL.
* No ground plane. Scripts model their own floor or table; an implicit plane would hold up bodies
  the script forgot to support. An unsupported body falls, and the stability check reports it.
* Poses in the contract are world-frame; a body with a ``parent`` is nested in its parent's body with
  the pose converted to the parent frame (written as a quaternion).
* The success zones are translucent, non-colliding box sites (group 2); a directional light and a
  camera named ``preview`` frame the scene estimated from poses, primitives and zones.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

import mujoco
import numpy as np
import numpy.typing as npt

from scenario_lib.scene.collision import effective_collision
from scenario_lib.contract import (
    AllOf,
    Body,
    Box,
    Collision,
    Cylinder,
    Fixed,
    Free,
    Hinge,
    InsideZone,
    Pose,
    Primitive,
    Slide,
    Sphere,
    SuccessCondition,
    Zone,
)
from scenario_lib.contract import Scenario
from scenario_lib.errors import MjcfError
from scenario_lib.report import Stage, StageResult
from scenario_lib.scene.limits import (
    MAX_BODY_EXTENT_M,
    MAX_MOVING_MASS_KG,
    MAX_TIMESTEP_S,
    MESH_SCALE,
    MIN_BODY_EXTENT_M,
    MIN_MOVING_MASS_KG,
)

MESH_DIR = "meshes"
GRAVITY_M_S2 = 9.81
VISUAL_GROUP = 1
ZONE_GROUP = 2
COLLISION_GROUP = 3
PREVIEW_CAMERA = "preview"
_PREVIEW_FOVY_DEG = 45.0


Matrix = npt.NDArray[np.float64]


def visual_mesh_file(body: str) -> str:
    """Path of a body's visual mesh, relative to the scene folder."""
    return f"{MESH_DIR}/{body}.stl"


def hull_mesh_file(body: str, index: int) -> str:
    """Path of a body's ``index``-th convex piece, relative to the scene folder."""
    return f"{MESH_DIR}/{body}_hull{index}.stl"


def assemble_mjcf(scenario: Scenario, hull_counts: Mapping[str, int]) -> str:
    """Return the MJCF text of ``scenario``; the same input always gives byte-identical output.

    ``hull_counts`` gives the number of convex pieces of every body that collides by decomposition.
    Raises `MjcfError` when the scenario cannot be expressed (unknown or cyclic parent, free body
    with a parent, missing pieces, PRIMITIVES without primitives).
    """
    bodies = {body.name: body for body in scenario.bodies}
    children = _children_by_parent(scenario)
    lines: list[str] = [
        f"<mujoco model={quoteattr(_xml_chars(scenario.family))}>",
        '  <compiler angle="degree" eulerseq="xyz" inertiafromgeom="true" autolimits="true"/>',
        # An elliptic friction cone: with MuJoCo's pyramidal default a load on a tilted plank creeps ~1 mm/s.
        f'  <option timestep="{_num(scenario.timestep_s)}" gravity="0 0 {_num(-GRAVITY_M_S2)}" cone="elliptic">',
        '    <flag energy="enable"/>',
        "  </option>",
        # Joint stops as stiff as the time step allows (MuJoCo's minimum time constant is 2 steps): with
        # the default 0.02 s a lever holding a steel load sags ~1–3° into its stop, and is not at rest.
        "  <default>",
        f'    <joint solreflimit="{_num(2 * scenario.timestep_s)} 1"/>',
        "  </default>",
        "  <visual>",
        '    <global offwidth="1280" offheight="960"/>',
        '    <quality shadowsize="0"/>',
        '    <headlight ambient="0.3 0.3 0.3" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>',
        "  </visual>",
        "  <asset>",
    ]
    scale = " ".join([_num(MESH_SCALE)] * 3)
    for body in scenario.bodies:
        lines.append(
            f'    <mesh name="{body.name}/visual" file="{visual_mesh_file(body.name)}" scale="{scale}" '
            'inertia="exact"/>'
        )
        if effective_collision(body) is Collision.DECOMPOSE:
            count = hull_counts.get(body.name, 0)
            if count < 1:
                raise MjcfError(
                    f"body {body.name!r} collides by convex decomposition but hull_counts gives {count} pieces; "
                    "run collision_meshes() first and pass the number of pieces per body"
                )
            for index in range(count):
                lines.append(
                    f'    <mesh name="{body.name}/hull{index}" file="{hull_mesh_file(body.name, index)}" '
                    f'scale="{scale}"/>'
                )
    lines += ["  </asset>", "  <worldbody>"]
    lines.append('    <light name="key" directional="true" pos="0 0 3" dir="-0.3 -0.2 -1" castshadow="false"/>')
    lines.append(_camera_line(scenario))
    for zone in _zones(scenario.success):
        center = " ".join(_num(value / 1000) for value in zone.center_mm)
        size = " ".join(_num(value / 1000) for value in zone.half_extents_mm)
        lines.append(
            f'    <site name="zone/{zone.name}" type="box" pos="{center}" size="{size}" '
            f'rgba="0.1 0.8 0.2 0.25" group="{ZONE_GROUP}"/>'
        )
    for root in children.get(None, []):
        lines.extend(_body_lines(bodies[root], bodies, children, hull_counts, depth=2))
    lines += ["  </worldbody>", "</mujoco>", ""]
    return "\n".join(lines)


# lxml schemas are not thread-safe: building two at once fails inside libxml2, and one schema's
# error_log is shared by concurrent validate() calls. Validation takes ~0.1 ms, so serialize it.
_SCHEMA_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_schema(xsd_path: str) -> object:
    from lxml import etree

    try:
        return etree.XMLSchema(etree.parse(xsd_path))
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as err:
        raise MjcfError(f"cannot load the MJCF schema {xsd_path}: {err}; check the configured schema path") from err


def check_schema(xml: str, xsd_path: Path) -> list[str]:
    """Validate MJCF text against MuJoCo's ``mjcf.xsd``; return errors as ``line N: message``."""
    from lxml import etree

    try:
        document = etree.fromstring(xml.encode("utf-8"))
    except etree.XMLSyntaxError as err:
        return [f"line {err.lineno}: XML syntax error: {err.msg}"]
    with _SCHEMA_LOCK:
        schema = _load_schema(str(Path(xsd_path).resolve()))
        assert isinstance(schema, etree.XMLSchema)
        if schema.validate(document):
            return []
        return [f"line {error.line}: {error.message}" for error in schema.error_log]


def compile_mjcf(scene_xml_path: Path) -> mujoco.MjModel:
    """Compile the MJCF file (mesh paths resolve relative to its folder); `MjcfError` on refusal."""
    return _compile(lambda: mujoco.MjModel.from_xml_path(str(scene_xml_path)), scene_xml_path.name)


def compile_mjcf_text(scene_xml: str, assets: Mapping[str, bytes]) -> mujoco.MjModel:
    """Compile MJCF text whose files are ``assets``, keyed by the paths the MJCF names (``meshes/box.stl``),
    in memory; `MjcfError` on refusal. The model is the one its folder on disk compiles to."""
    return _compile(lambda: mujoco.MjModel.from_xml_string(scene_xml, assets=dict(assets)), "the scene's MJCF")


def _compile(load: Callable[[], mujoco.MjModel], name: str) -> mujoco.MjModel:
    # MuJoCo caches decoded mesh assets by file name: a mesh rewritten at the same path (same scene
    # folder, next seed; the same asset name, next build) can compile from the stale copy, e.g. with the
    # old mass. Drop the cache.
    mujoco.mj_clearCache(mujoco.mj_getCache())
    try:
        return load()
    except ValueError as err:
        raise MjcfError(f"MuJoCo refused {name}: {str(err).strip()}") from err


def check_model_rules(model: mujoco.MjModel, scenario: Scenario) -> list[str]:
    """Problems the MuJoCo compiler lets through: bad timestep, mesh scale, masses, sizes, no motion."""
    problems: list[str] = []
    timestep = float(model.opt.timestep)
    if not 0 < timestep <= MAX_TIMESTEP_S:
        problems.append(
            f"timestep is {timestep:g} s; it must be in (0, {MAX_TIMESTEP_S:g}] s — use the default 0.002"
        )
    for mesh_id in range(model.nmesh):
        mesh_scale = model.mesh_scale[mesh_id]
        if not np.allclose(mesh_scale, MESH_SCALE, rtol=1e-9, atol=0):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_MESH, mesh_id)
            problems.append(
                f"mesh {name!r} has scale {_vec(mesh_scale)}; CAD is in mm so the scale must be 0.001 0.001 0.001"
            )
    moving = [body_id for body_id in range(1, model.nbody) if model.body_weldid[body_id] != 0]
    if not moving or model.nv == 0:
        problems.append(
            "no body can move (all are fixed); give the manipulated body motion=FREE, a Hinge or a Slide"
        )
    for body_id in range(1, model.nbody):
        if model.body_weldid[body_id] != body_id or body_id not in moving:
            continue
        # The mass that moves as one rigid piece: this body and everything welded to it.
        mass = float(model.body_mass[model.body_weldid == body_id].sum())
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body_id)
        if not MIN_MOVING_MASS_KG <= mass <= MAX_MOVING_MASS_KG:
            problems.append(
                f"moving body {name!r} weighs {mass:.4g} kg, outside "
                f"[{MIN_MOVING_MASS_KG:g}, {MAX_MOVING_MASS_KG:g}] kg;"
                " check its size is in mm and its density_kg_m3 (steel 7850, wood 600, plastic 1200)"
            )
    for body in scenario.bodies:
        body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body.name)
        if body_id < 0:
            problems.append(f"body {body.name!r} of the scenario is missing from the model")
            continue
        extent = _body_extent_m(model, body_id)
        if not MIN_BODY_EXTENT_M <= extent <= MAX_BODY_EXTENT_M:
            problems.append(
                f"body {body.name!r} is {extent * 1000:.4g} mm across, outside "
                f"[{MIN_BODY_EXTENT_M * 1000:g} mm, {MAX_BODY_EXTENT_M:g} m]; model parts in mm at a realistic size"
            )
    return problems


def mjcf_stage(
    scene_xml: str, assets: Mapping[str, bytes], scenario: Scenario, xsd_path: Path | None = None
) -> tuple[StageResult, mujoco.MjModel | None]:
    """The MJCF stage on a scene in memory (its MJCF text and files): schema (when ``xsd_path`` is
    given), compilation and model rules."""
    started = time.perf_counter()
    metrics: dict[str, float | int | bool | str] = {}
    if xsd_path is not None:
        schema_started = time.perf_counter()
        errors = check_schema(scene_xml, xsd_path)
        metrics["schema_s"] = round(time.perf_counter() - schema_started, 4)
        if errors:
            shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
            return _fail(f"MJCF does not match the MuJoCo schema: {shown}", metrics, started), None
    compile_started = time.perf_counter()
    try:
        model = compile_mjcf_text(scene_xml, assets)
    except MjcfError as err:
        return _fail(f"{err}; fix the body or geometry it names", metrics, started), None
    metrics["compile_s"] = round(time.perf_counter() - compile_started, 4)
    metrics |= {
        "nbody": int(model.nbody),
        "ngeom": int(model.ngeom),
        "nmesh": int(model.nmesh),
        "nv": int(model.nv),
        "total_mass_kg": round(float(model.body_mass.sum()), 6),
    }
    problems = check_model_rules(model, scenario)
    if problems:
        return _fail("; ".join(problems), metrics, started), None
    return StageResult.passing(Stage.MJCF, metrics, duration_s=time.perf_counter() - started), model


def _fail(message: str, metrics: dict[str, float | int | bool | str], started: float) -> StageResult:
    return StageResult.failing(Stage.MJCF, message, metrics, duration_s=time.perf_counter() - started)


def _body_extent_m(model: mujoco.MjModel, body_id: int) -> float:
    """Largest side of the axis-aligned box (body frame) around the body's own geoms, in metres."""
    geoms = np.flatnonzero(model.geom_bodyid == body_id)
    if len(geoms) == 0:
        return 0.0
    low = np.full(3, np.inf)
    high = np.full(3, -np.inf)
    for geom_id in geoms:
        center, half = model.geom_aabb[geom_id, :3], model.geom_aabb[geom_id, 3:]
        flat = np.zeros(9)
        mujoco.mju_quat2Mat(flat, model.geom_quat[geom_id])
        matrix = flat.reshape(3, 3)
        world_center = model.geom_pos[geom_id] + matrix @ center
        world_half = np.abs(matrix) @ half
        low = np.minimum(low, world_center - world_half)
        high = np.maximum(high, world_center + world_half)
    return float((high - low).max())


def _children_by_parent(scenario: Scenario) -> dict[str | None, list[str]]:
    names = {body.name for body in scenario.bodies}
    if len(names) != len(scenario.bodies):
        raise MjcfError(f"body names must be unique; got {[body.name for body in scenario.bodies]}")
    children: dict[str | None, list[str]] = {}
    for body in scenario.bodies:
        if body.parent is not None and body.parent not in names:
            raise MjcfError(
                f"body {body.name!r} names parent {body.parent!r}, which is not a body; use one of {sorted(names)}"
            )
        if body.parent is not None and isinstance(body.motion, Free):
            raise MjcfError(
                f"body {body.name!r} is FREE but has parent {body.parent!r}; MuJoCo allows free joints only on "
                "top-level bodies — drop the parent or use a Hinge/Slide"
            )
        children.setdefault(body.parent, []).append(body.name)
    # Every body must hang from the world: a parent cycle leaves some unreachable.
    reachable: set[str] = set()
    stack = list(children.get(None, []))
    while stack:
        name = stack.pop()
        reachable.add(name)
        stack.extend(children.get(name, []))
    if reachable != names:
        raise MjcfError(
            f"bodies {sorted(names - reachable)} form a parent cycle; each chain must end at a top-level body"
        )
    return children


def _body_lines(
    body: Body,
    bodies: Mapping[str, Body],
    children: Mapping[str | None, list[str]],
    hull_counts: Mapping[str, int],
    depth: int,
) -> Iterator[str]:
    pad = "  " * depth
    if body.parent is None:
        placement = f'pos="{_mm_vec(body.pose.position_mm)}" euler="{_vec(body.pose.euler_deg)}"'
    else:
        position_m, quat = _relative_pose(bodies[body.parent].pose, body.pose)
        placement = f'pos="{_vec(position_m)}" quat="{_vec(quat)}"'
    yield f'{pad}<body name="{body.name}" {placement}>'
    inner = pad + "  "
    motion = body.motion
    if isinstance(motion, Free):
        yield f'{inner}<freejoint name="{body.name}/free"/>'
    elif isinstance(motion, Hinge):
        limits = f' range="{_vec(motion.range_deg)}"' if motion.range_deg is not None else ""
        yield (
            f'{inner}<joint name="{body.name}/hinge" type="hinge" pos="{_mm_vec(motion.anchor_mm)}" '
            f'axis="{_vec(motion.axis)}"{limits} damping="{_num(motion.damping)}"/>'
        )
    elif isinstance(motion, Slide):
        limits = f' range="{_mm_vec(motion.range_mm)}"' if motion.range_mm is not None else ""
        yield (
            f'{inner}<joint name="{body.name}/slide" type="slide" axis="{_vec(motion.axis)}"{limits} '
            f'damping="{_num(motion.damping)}"/>'
        )
    else:
        assert isinstance(motion, Fixed)
    rgba = _vec(body.rgba)
    yield (
        f'{inner}<geom name="{body.name}/visual" type="mesh" mesh="{body.name}/visual" '
        f'density="{_num(body.density_kg_m3)}" contype="0" conaffinity="0" group="{VISUAL_GROUP}" rgba="{rgba}"/>'
    )
    # Collision geoms carry no mass (density 0): the visual mesh alone gives mass and inertia.
    collide = (
        f'density="0" friction="{_num(body.friction)} 0.005 0.0001" group="{COLLISION_GROUP}" '
        'rgba="0.9 0.4 0.1 0.5"'
    )
    mode = effective_collision(body)
    if mode is Collision.PRIMITIVES:
        if not body.primitives:
            raise MjcfError(
                f"body {body.name!r} is declared Collision.PRIMITIVES but lists no primitives; add Box/Cylinder/"
                "Sphere primitives or use Collision.AUTO"
            )
        for index, primitive in enumerate(body.primitives):
            yield f'{inner}<geom name="{body.name}/collision{index}" {_primitive_attributes(primitive)} {collide}/>'
    elif mode is Collision.HULL:
        yield f'{inner}<geom name="{body.name}/collision0" type="mesh" mesh="{body.name}/visual" {collide}/>'
    else:
        for index in range(hull_counts[body.name]):
            yield (
                f'{inner}<geom name="{body.name}/collision{index}" type="mesh" mesh="{body.name}/hull{index}" '
                f"{collide}/>"
            )
    for child in children.get(body.name, []):
        yield from _body_lines(bodies[child], bodies, children, hull_counts, depth + 1)
    yield f"{pad}</body>"


def _primitive_attributes(primitive: Primitive) -> str:
    placement = f'pos="{_mm_vec(primitive.pose.position_mm)}" euler="{_vec(primitive.pose.euler_deg)}"'
    if isinstance(primitive, Box):
        return f'type="box" size="{_mm_vec(primitive.half_size_mm)}" {placement}'
    if isinstance(primitive, Cylinder):
        return f'type="cylinder" size="{_mm_vec((primitive.radius_mm, primitive.half_length_mm))}" {placement}'
    assert isinstance(primitive, Sphere)
    return f'type="sphere" size="{_mm_vec((primitive.radius_mm,))}" {placement}'


def _zones(condition: SuccessCondition) -> list[Zone]:
    if isinstance(condition, InsideZone):
        return [condition.zone]
    if isinstance(condition, AllOf):
        found: dict[str, Zone] = {}
        for inner in condition.conditions:
            for zone in _zones(inner):
                found.setdefault(zone.name, zone)
        return list(found.values())
    return []


def _camera_line(scenario: Scenario) -> str:
    """A camera looking at the estimated scene bounds from the front-right, above."""
    points: list[npt.NDArray[np.float64]] = []
    for body in scenario.bodies:
        rotation = rotation_matrix(body.pose.euler_deg)
        origin = np.asarray(body.pose.position_mm, dtype=float)
        points.append(origin)
        for primitive in body.primitives:
            center = origin + rotation @ np.asarray(primitive.pose.position_mm, dtype=float)
            radius = _primitive_radius_mm(primitive)
            points += [center - radius, center + radius]
    for zone in _zones(scenario.success):
        center = np.asarray(zone.center_mm, dtype=float)
        half = np.asarray(zone.half_extents_mm, dtype=float)
        points += [center - half, center + half]
    cloud = np.asarray(points) / 1000
    center = (cloud.min(axis=0) + cloud.max(axis=0)) / 2
    radius = max(float(np.linalg.norm(cloud.max(axis=0) - cloud.min(axis=0))) / 2, 0.05)
    distance = 0.9 * radius / math.tan(math.radians(_PREVIEW_FOVY_DEG / 2))
    direction = np.array([1.0, -1.2, 0.9])
    position = center + distance * direction / np.linalg.norm(direction)
    forward = (center - position) / np.linalg.norm(center - position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return (
        f'    <camera name="{PREVIEW_CAMERA}" pos="{_vec(position)}" xyaxes="{_vec(right)} {_vec(up)}" '
        f'fovy="{_num(_PREVIEW_FOVY_DEG)}"/>'
    )


def _primitive_radius_mm(primitive: Primitive) -> float:
    if isinstance(primitive, Box):
        return float(np.linalg.norm(primitive.half_size_mm))
    if isinstance(primitive, Cylinder):
        return math.hypot(primitive.radius_mm, primitive.half_length_mm)
    return primitive.radius_mm


def rotation_matrix(euler_deg: tuple[float, float, float]) -> Matrix:
    """World-from-body rotation of MuJoCo's intrinsic ``xyz`` Euler angles (degrees): Rx·Ry·Rz."""
    result = np.eye(3)
    for axis, angle in enumerate(euler_deg):
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        i, j = [(1, 2), (0, 2), (0, 1)][axis]
        step = np.eye(3)
        step[i, i] = step[j, j] = c
        # Ry has its sine signs flipped relative to Rx and Rz (right-handed, cyclic order z→x).
        sign = -1.0 if axis == 1 else 1.0
        step[i, j], step[j, i] = -s * sign, s * sign
        result = result @ step
    return result


def _relative_pose(parent: Pose, child: Pose) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The child's pose in its parent's frame: position in metres and a unit quaternion (w ≥ 0)."""
    parent_rotation = rotation_matrix(parent.euler_deg)
    offset_mm = np.asarray(child.position_mm, dtype=float) - np.asarray(parent.position_mm, dtype=float)
    position_m = parent_rotation.T @ offset_mm / 1000
    relative = parent_rotation.T @ rotation_matrix(child.euler_deg)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, relative.reshape(-1))
    if quat[0] < 0:
        quat = -quat
    return position_m, quat


# Characters XML 1.0 cannot hold even escaped (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_chars(text: str) -> str:
    """``text`` with every character XML cannot hold replaced by U+FFFD (the family name is free text)."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _num(value: float) -> str:
    """Fixed float formatting (9 significant digits, no negative zero) so output is byte-stable."""
    text = f"{float(value):.9g}"
    return "0" if text in ("-0", "0") else text


def _vec(values: object) -> str:
    return " ".join(_num(value) for value in values)  # type: ignore[attr-defined]


def _mm_vec(values: object) -> str:
    return " ".join(_num(value / 1000) for value in values)  # type: ignore[attr-defined]
