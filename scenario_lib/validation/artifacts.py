"""The scenario folder: what a validated (or failed) scenario looks like on disk.

::

    <scenario_id>/
      scenario.py       the script, exactly as validated
      scene.xml         MJCF; mesh paths are relative (meshes/...)
      meshes/*.stl      visual meshes and collision hulls
      validation.json   the ValidationReport
      task.json         ScenarioTask: the objective and the success condition as data (passed scenarios)
      demonstration.json  the solvability stage's demonstration (passed scenarios)
      preview.png       offscreen render of the scene (when rendering is available)
      certificate.json  ScenarioCertificate: every check, threshold and measured value, and every file's hash
                        (passed scenarios; `scenario_lib.validation.certificate`)
      manifest.json     ScenarioManifest: written last, it lists every other file with its hash
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from scenario_lib.contract import SuccessCondition
from scenario_lib.errors import StoreError
from scenario_lib.report import ValidationReport
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import join_key
from scenario_lib.store.records import parse_record
from scenario_lib.validation.certificate import CERTIFICATE_FILE, build_certificate
from scenario_lib.validation.pipeline import SeedValidation, library_versions

SCRIPT_FILE = "scenario.py"
REPORT_FILE = "validation.json"
PREVIEW_FILE = "preview.png"
DEMONSTRATION_FILE = "demonstration.json"
TASK_FILE = "task.json"
TASK_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
_DAMAGED_FOLDER_FIX = "restore the folder from a copy, or delete it (its _COMMITTED marker first) so the seed is generated again"


class FileEntry(BaseModel):
    path: str
    sha256: str
    size_bytes: int


class ScenarioManifest(BaseModel):
    """Metadata of one scenario folder."""

    format_version: int = MANIFEST_FORMAT_VERSION
    id: str
    tier: str
    family: str
    prompt: str
    author: str
    seed: int
    scale: tuple[float, float, float]
    parameters: dict[str, float] = Field(default_factory=dict)
    objective: str
    passed: bool
    stage_reached: str
    attempt: int = 1
    script_sha256: str
    demonstration_sha256: str | None = None  # of demonstration.json, the base seed's solvability demonstration
    files: list[FileEntry] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def total_size_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.files)


class ScenarioTask(BaseModel):
    """What a passed scenario asks (``task.json``): its objective and success condition, as data, so a consumer
    (the Gymnasium environment) knows the goal without running the untrusted script."""

    format_version: int = TASK_FORMAT_VERSION
    objective: str
    success: SuccessCondition


def write_scenario_folder(
    folder: Path,
    *,
    scenario_id: str,
    tier: str,
    prompt: str,
    author: str,
    source: str,
    report: ValidationReport,
    result: SeedValidation,
    attempt: int = 1,
) -> ScenarioManifest:
    """Write a scenario folder (scene files only when the scene was built) and return its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SCRIPT_FILE).write_text(source, encoding="utf-8")
    (folder / REPORT_FILE).write_text(report.model_dump_json(indent=2), encoding="utf-8")
    if result.scene is not None and report.passed:
        result.scene.write(folder)
    if result.preview_png is not None:
        (folder / PREVIEW_FILE).write_bytes(result.preview_png)
    if result.demonstration is not None and report.passed:
        (folder / DEMONSTRATION_FILE).write_bytes(result.demonstration)
    if result.scenario is not None and report.passed:
        task = ScenarioTask(objective=result.scenario.objective, success=result.scenario.success)
        (folder / TASK_FILE).write_text(task.model_dump_json(indent=2), encoding="utf-8")
    # The certificate hashes every file written above, and the manifest (last) lists the certificate.
    if report.passed and result.scene is not None and result.demonstration is not None:
        hashes = {entry.path: entry.sha256 for entry in _file_entries(folder) if entry.path != CERTIFICATE_FILE}
        certificate = build_certificate(scenario_id=scenario_id, report=report, result=result, files=hashes)
        (folder / CERTIFICATE_FILE).write_text(certificate.model_dump_json(indent=2), encoding="utf-8")
    else:
        (folder / CERTIFICATE_FILE).unlink(missing_ok=True)  # a stale one must not vouch for a failed folder

    scenario = result.scenario
    manifest = ScenarioManifest(
        id=scenario_id,
        tier=tier,
        family=scenario.family if scenario else "unknown",
        prompt=prompt,
        author=author,
        seed=result.report.seed,
        scale=result.report.scale,
        parameters=dict(scenario.parameters) if scenario else {},
        objective=scenario.objective if scenario else "",
        passed=report.passed,
        stage_reached=result.report.stage_reached.value,
        attempt=attempt,
        script_sha256=report.script_sha256,
        demonstration_sha256=(
            hashlib.sha256(result.demonstration).hexdigest() if result.demonstration is not None and report.passed else None
        ),
        files=_file_entries(folder),
        versions=report.versions or library_versions(),
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


def _file_entries(folder: Path) -> list[FileEntry]:
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
            data = path.read_bytes()
            entries.append(
                FileEntry(
                    path=path.relative_to(folder).as_posix(),
                    sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                )
            )
    return entries


def parse_scenario_manifest(data: bytes, *, url: str) -> ScenarioManifest:
    """Parse the bytes of a scenario folder's ``manifest.json`` read from `url`.

    Raises `StoreError` naming the file and the fix when it is not JSON, not a manifest, or written by a
    newer scenario_lib (a higher ``format_version``).
    """
    return parse_record(
        ScenarioManifest,
        data,
        url=url,
        what="scenario manifest",
        format_name="manifest",
        fix=_DAMAGED_FOLDER_FIX,
        format_version=MANIFEST_FORMAT_VERSION,
    )


def read_manifest(folder: Path) -> ScenarioManifest:
    """Read a scenario folder's manifest; `StoreError` if it is missing, corrupt or from a newer format."""
    path = Path(folder) / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StoreError(
            f"cannot read {path} ({err.strerror or err}): is {folder} a scenario folder? Every scenario folder holds "
            f"a {MANIFEST_FILE}"
        ) from err
    return parse_scenario_manifest(data, url=f"file://{path.resolve()}")



def read_scenario_manifest(store: DatasetStore, folder: str) -> ScenarioManifest:
    """The manifest of the stored scenario folder ``folder``; `StoreError` naming the file and the fix."""
    key = join_key(folder, MANIFEST_FILE)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError as err:
        raise ObjectNotFoundError(
            f"the committed scenario folder {store.url_for(folder)} is incomplete (no {MANIFEST_FILE}: {err}); {_DAMAGED_FOLDER_FIX}"
        ) from err
    return parse_scenario_manifest(data, url=store.url_for(key))


def read_scenario_report(store: DatasetStore, folder: str) -> ValidationReport:
    """The validation report of the stored scenario folder ``folder``; `StoreError` naming the file and the fix."""
    key = join_key(folder, REPORT_FILE)
    try:
        return ValidationReport.model_validate_json(store.read_bytes(key))
    except ObjectNotFoundError as err:
        raise ObjectNotFoundError(
            f"the committed scenario folder {store.url_for(folder)} is incomplete (no {REPORT_FILE}: {err}); {_DAMAGED_FOLDER_FIX}"
        ) from err
    except ValidationError as err:
        raise StoreError(
            f"validation report {store.url_for(key)} is corrupt ({err.errors()[0]['msg']}); {_DAMAGED_FOLDER_FIX}"
        ) from err
