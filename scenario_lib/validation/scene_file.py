"""Validate any MuJoCo model file: compile, the general rules, stability and at rest; no task.

`validate_mjcf_file` is what ``scenarios validate PATH.xml`` runs. The file is untrusted input like a
script: every file it names (meshes, textures, includes, asset folders) must lie under its own folder,
and a broken XML is a one-line `MjcfError`. Only the rules that hold for any model apply (a positive
timestep of at most 0.01 s, no NaN, no MuJoCo warnings, the passive simulation stable and at rest
from ``qpos0`` or a keyframe, every control at zero), not those that only hold for our CAD output
(mesh scale 0.001, mass ranges). The report has the usual shape: code, geometry, task and
solvability are recorded as not applicable.
"""

from __future__ import annotations

import hashlib
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from scenario_lib.errors import MjcfError
from scenario_lib.report import STAGE_ORDER, Metric, SeedReport, Stage, StageResult, ValidationReport, Verdict
from scenario_lib.scene.limits import MAX_TIMESTEP_S

# Attributes that name files MuJoCo will open, relative to the model's folder (or to these folders).
_FILE_ATTRIBUTES = ("file", "meshdir", "texturedir", "assetdir", "fileright", "fileleft", "fileup", "filedown", "filefront", "fileback")
MAX_MODEL_BYTES = 64 * 1024 * 1024


def referenced_files(xml_path: Path) -> list[str]:
    """Every file or folder the model names; raises `MjcfError` for XML that does not parse."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as err:
        raise MjcfError(f"{xml_path.name} is not well-formed XML ({err}); fix the file or export it again") from None
    return [value for element in root.iter() for name, value in element.attrib.items() if name in _FILE_ATTRIBUTES]


def check_confined(xml_path: Path) -> None:
    """Refuse a model that names a file outside its own folder (absolute, or escaping with ..)."""
    folder = xml_path.resolve().parent
    for reference in referenced_files(xml_path):
        target = (folder / reference).resolve()
        if Path(reference).is_absolute() or not target.is_relative_to(folder):
            raise MjcfError(
                f"{xml_path.name} names {reference!r}, outside its own folder {str(folder)!r}; a model may only read "
                "files beside it or below it: copy the asset there and use a relative path"
            )


def _not_applicable(stage: Stage) -> StageResult:
    return StageResult(stage=stage, verdict=Verdict.NOT_APPLICABLE, message="a raw MJCF file has no script or task")


def validate_mjcf_file(xml_path: Path, *, keyframe: str | None = None, duration_s: float = 1.0) -> ValidationReport:
    """Validate a MuJoCo model file (see the module doc); raises `MjcfError` when it cannot be read."""
    import mujoco

    from scenario_lib.scene.simulation import check_stability
    from scenario_lib.validation.pipeline import library_versions

    started = time.perf_counter()
    if not xml_path.is_file():
        raise MjcfError(f"no MJCF file at {xml_path}; pass the path of a MuJoCo .xml model")
    data = xml_path.read_bytes()
    if len(data) > MAX_MODEL_BYTES:
        raise MjcfError(f"{xml_path.name} is {len(data) / 1e6:.0f} MB; models over {MAX_MODEL_BYTES // 2**20} MB are refused")
    check_confined(xml_path)
    stages: list[StageResult] = [_not_applicable(Stage.CODE), _not_applicable(Stage.GEOMETRY)]
    compile_started = time.perf_counter()
    try:
        model = mujoco.MjModel.from_xml_path(str(xml_path))
    except ValueError as err:
        message = " ".join(str(err).split())
        stages.append(StageResult.failing(Stage.MJCF, f"MuJoCo does not compile the model: {message}"))
        model = None
    if model is not None:
        problems = []
        if not 0 < model.opt.timestep <= MAX_TIMESTEP_S:
            problems.append(f"timestep is {model.opt.timestep:g} s; it must be in (0, {MAX_TIMESTEP_S:g}] s")
        if keyframe is not None:
            index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, keyframe)
            if index < 0:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_KEY, k) for k in range(model.nkey)]
                raise MjcfError(f"{xml_path.name} has no keyframe {keyframe!r}; its keyframes are {names}")
            # The passive simulation starts at qpos0; start it at the keyframe's pose instead.
            model.qpos0[:] = model.key_qpos[index]
        metrics: dict[str, Metric] = {"bodies": int(model.nbody), "dofs": int(model.nv), "wall_s": round(time.perf_counter() - compile_started, 4)}
        stages.append(StageResult.failing(Stage.MJCF, "; ".join(problems), metrics) if problems else StageResult.passing(Stage.MJCF, metrics))
    if model is not None and stages[-1].passed:
        stages.append(check_stability(model, duration_s=duration_s))
    for stage in STAGE_ORDER:
        if stage not in {result.stage for result in stages}:
            failed = any(result.verdict is Verdict.FAIL for result in stages)
            stages.append(
                StageResult(stage=stage, verdict=Verdict.SKIPPED, message="skipped: an earlier stage failed")
                if failed and stage is Stage.STABILITY
                else _not_applicable(stage)
            )
    order = {stage: index for index, stage in enumerate(STAGE_ORDER)}
    stages.sort(key=lambda result: order[result.stage])
    return ValidationReport(
        script_sha256=hashlib.sha256(data).hexdigest(),
        seeds=[SeedReport(seed=0, scale=(1.0, 1.0, 1.0), stages=stages)],
        versions=library_versions(),
        duration_s=round(time.perf_counter() - started, 4),
    )
