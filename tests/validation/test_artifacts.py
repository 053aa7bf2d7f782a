"""The scenario folder: its layout, its manifest's hashes, and a scene MuJoCo loads from the folder alone."""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import pytest

from scenario_lib.validation.artifacts import (
    DEMONSTRATION_FILE,
    MANIFEST_FILE,
    PREVIEW_FILE,
    REPORT_FILE,
    SCRIPT_FILE,
    TASK_FILE,
    ScenarioManifest,
    read_manifest,
    write_scenario_folder,
)
from scenario_lib.config import PACKAGED_MJCF_SCHEMA
from scenario_lib.report import ValidationReport
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.validation.certificate import CERTIFICATE_FILE
from scenario_lib.validation.pipeline import SCENE_FILE, HarnessConfig, SeedValidation, Validator, script_sha256
from tests.support import REPO, SCRIPTS

PEG_IN_HOLE = (REPO / "examples" / "tier1_peg_in_hole.py").read_text(encoding="utf-8")

Validated = tuple[str, ValidationReport, SeedValidation]


@pytest.fixture(scope="module")
def validator(sandbox_pool: SandboxPool, decomposition_cache: Path) -> Validator:
    config = HarnessConfig(seeds=2, mjcf_schema_path=PACKAGED_MJCF_SCHEMA, decomposition_cache_dir=decomposition_cache)
    return Validator(sandbox_pool, config)


@pytest.fixture(scope="module")
def passed(validator: Validator) -> Validated:
    report, result = validator.validate_script(PEG_IN_HOLE, base_seed=4, render_preview=True)
    assert report.passed, report.summary()
    return PEG_IN_HOLE, report, result


def write(folder: Path, validated: Validated, **overrides: object) -> ScenarioManifest:
    source, report, result = validated
    arguments: dict[str, object] = {
        "scenario_id": "run-1_4",
        "tier": "tier1",
        "prompt": "a peg into a hole",
        "author": "offline:default",
        "source": source,
        "report": report,
        "result": result,
        **overrides,
    }
    return write_scenario_folder(folder, **arguments)  # type: ignore[arg-type]


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_passed_scenario_folder_has_the_documented_layout(passed: Validated, tmp_path: Path) -> None:
    folder = tmp_path / "run-1_4"
    _, _, result = passed
    assert result.scenario is not None

    write(folder, passed)

    meshes = {f"meshes/{body.name}.stl" for body in result.scenario.bodies}
    assert files_in(folder) == {
        SCRIPT_FILE, SCENE_FILE, REPORT_FILE, PREVIEW_FILE, MANIFEST_FILE, DEMONSTRATION_FILE, TASK_FILE, CERTIFICATE_FILE
    } | meshes
    assert (folder / SCRIPT_FILE).read_text(encoding="utf-8") == PEG_IN_HOLE
    assert (folder / PREVIEW_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert result.scene is not None
    assert (folder / SCENE_FILE).read_text(encoding="utf-8") == result.scene.scene_xml
    for name, data in result.scene.files.items():
        assert (folder / name).read_bytes() == data


def test_manifest_lists_every_other_file_with_its_hash_and_size(passed: Validated, tmp_path: Path) -> None:
    source, report, result = passed
    folder = tmp_path / "run-1_4"

    manifest = write(folder, passed, attempt=2)

    listed = {entry.path: entry for entry in manifest.files}
    assert set(listed) == files_in(folder) - {MANIFEST_FILE}
    assert [entry.path for entry in manifest.files] == sorted(listed)
    for path, entry in listed.items():
        data = (folder / path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest(), path
        assert entry.size_bytes == len(data), path
    assert manifest.total_size_bytes() == sum(entry.size_bytes for entry in manifest.files)
    assert read_manifest(folder) == manifest
    assert result.scenario is not None
    assert (manifest.id, manifest.tier, manifest.family) == ("run-1_4", "tier1", "peg_in_hole")
    assert (manifest.seed, manifest.scale) == (4, report.seeds[0].scale)
    assert manifest.passed and manifest.stage_reached == "solvability" and manifest.attempt == 2
    assert manifest.script_sha256 == script_sha256(source)
    assert manifest.script_sha256 == hashlib.sha256((folder / SCRIPT_FILE).read_bytes()).hexdigest()
    assert manifest.parameters == result.scenario.parameters
    assert manifest.objective == result.scenario.objective
    assert manifest.versions == report.versions
    assert ValidationReport.model_validate_json((folder / REPORT_FILE).read_text(encoding="utf-8")) == report


def test_scene_loads_with_plain_mujoco_from_a_moved_folder(passed: Validated, tmp_path: Path) -> None:
    _, _, result = passed
    write(tmp_path / "written", passed)
    # Moved elsewhere: only paths relative to the folder can still resolve.
    moved = Path(shutil.move(str(tmp_path / "written"), str(tmp_path / "elsewhere" / "run-1_4")))

    mesh_files = [element.get("file", "") for element in ET.parse(moved / SCENE_FILE).iter("mesh")]
    assert mesh_files and all(name.startswith("meshes/") and name.endswith(".stl") for name in mesh_files)
    assert all((moved / name).is_file() for name in mesh_files)
    assert ET.parse(moved / SCENE_FILE).find("compiler").get("meshdir") is None  # type: ignore[union-attr]
    model = mujoco.MjModel.from_xml_path(str(moved / SCENE_FILE))
    assert result.scenario is not None
    assert model.nbody == len(result.scenario.bodies) + 1
    assert model.nmesh == len(mesh_files)
    data = mujoco.MjData(model)
    mujoco.mj_step(model, data, nstep=50)
    assert data.time == pytest.approx(50 * model.opt.timestep)


def test_failed_scenario_keeps_script_and_report_but_no_scene(validator: Validator, tmp_path: Path) -> None:
    source = (SCRIPTS / "broken_exploding.py").read_text(encoding="utf-8")
    report, result = validator.validate_script(source, base_seed=1, render_preview=True)
    assert not report.passed and result.scene is not None  # assembled, but it failed stability
    folder = tmp_path / "run-1_1"

    manifest = write(folder, (source, report, result), scenario_id="run-1_1", attempt=3)

    assert files_in(folder) == {SCRIPT_FILE, REPORT_FILE, MANIFEST_FILE}
    assert not manifest.passed and manifest.stage_reached == "stability"
    assert manifest.family == "broken_exploding" and manifest.seed == 1
    assert [entry.path for entry in manifest.files] == [SCRIPT_FILE, REPORT_FILE]


def test_script_that_never_built_is_stored_as_unknown(validator: Validator, tmp_path: Path) -> None:
    source = "def build(seed, scale):\n    return None\n"
    report, result = validator.validate_script(source)
    folder = tmp_path / "run-1_0"

    manifest = write(folder, (source, report, result), scenario_id="run-1_0")

    assert files_in(folder) == {SCRIPT_FILE, REPORT_FILE, MANIFEST_FILE}
    assert (manifest.family, manifest.objective, manifest.parameters) == ("unknown", "", {})
    assert manifest.stage_reached == "code" and not manifest.passed


def test_no_preview_file_without_a_rendered_preview(validator: Validator, tmp_path: Path) -> None:
    report, result = validator.validate_script(PEG_IN_HOLE, base_seed=4)
    assert report.passed and result.preview_png is None

    write(tmp_path / "run-1_4", (PEG_IN_HOLE, report, result))

    assert PREVIEW_FILE not in files_in(tmp_path / "run-1_4")
    assert SCENE_FILE in files_in(tmp_path / "run-1_4")
