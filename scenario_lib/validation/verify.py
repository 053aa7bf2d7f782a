"""Verification: check a stored scenario folder against its certificate, without running its script.

`verify_scenario` reads a folder through a `FolderReader` (a store, or any other source of its files) and:

1. checks the SHA-256 of every file against the folder's manifest and its certificate, and that no file
   is there that neither lists;
2. re-runs on the stored files what needs no script: the visual meshes' mesh checks (geometry), MJCF
   compilation, the passive simulation (stability and at rest), the task's goal distance at t=0, the
   negative control, and the replay of the stored demonstration;
3. compares what it measured with the certificate's values within the tolerances below, and the verdicts
   exactly.

A scenario is *verified* when nothing differs, *flagged* with every finding otherwise (what, expected,
measured, tolerance), and *uncertified* when its folder predates certificates (its hashes are still
checked). A consistent forgery (a scene edited and every hash rewritten) passes step 1 and is caught in
step 3 by the physics it changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError
from scenario_lib.store.layout import COMMIT_MARKER, join_key, validate_key
from scenario_lib.validation.artifacts import (
    DEMONSTRATION_FILE,
    MANIFEST_FILE,
    ScenarioManifest,
    parse_scenario_manifest,
)
from scenario_lib.validation.certificate import (
    CERTIFICATE_FILE,
    CERTIFICATE_FORMAT_VERSION,
    ScenarioCertificate,
)
from scenario_lib.validation.findings import (
    EXACT,
    PHYSICS_VERSION_KEYS,
    SAME_VERSION_TOLERANCES,
    VERSION_CHANGE_TOLERANCES,
    Aspect,
    Finding,
    Findings,
    Tolerance,
)
from scenario_lib.validation.pipeline import library_versions
from scenario_lib.validation.rerun import rerun_stages


class VerificationStatus(StrEnum):
    """Verified: nothing differs; flagged: see the findings; uncertified: the folder has no certificate."""

    VERIFIED = "verified"
    FLAGGED = "flagged"
    UNCERTIFIED = "uncertified"


class ScenarioVerification(BaseModel):
    """The verification of one scenario folder."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    location: str
    status: VerificationStatus
    findings: list[Finding] = Field(default_factory=list)
    checks: int = 0  # how many comparisons were made
    certified_versions: dict[str, str] = Field(default_factory=dict)
    version_changes: list[str] = Field(default_factory=list)  # e.g. "mujoco 3.3.0 -> 3.3.1"
    note: str = ""  # why an uncertified scenario could not be verified, and the fix
    duration_s: float = 0.0

    @property
    def verified(self) -> bool:
        return self.status is VerificationStatus.VERIFIED


class BenchmarkVerification(BaseModel):
    """The verification of every scenario a benchmark lists."""

    model_config = ConfigDict(frozen=True)

    dest: str
    url: str
    versions: dict[str, str]
    scenarios: list[ScenarioVerification]
    withdrawn: list[str] = Field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        return [item.scenario_id for item in self.scenarios if item.status is VerificationStatus.FLAGGED]

    @property
    def uncertified(self) -> list[str]:
        return [item.scenario_id for item in self.scenarios if item.status is VerificationStatus.UNCERTIFIED]

    @property
    def verified(self) -> bool:
        return all(item.verified for item in self.scenarios)


@dataclass(frozen=True)
class FolderReader:
    """A scenario folder's files: ``read(name)`` gives a file's bytes (`ObjectNotFoundError` when absent) and
    ``names`` every file the folder holds; ``location`` names the folder in messages."""

    location: str
    names: tuple[str, ...]
    read: Callable[[str], bytes]

    @classmethod
    def from_store(cls, store: DatasetStore, folder: str) -> FolderReader:
        prefix = validate_key(folder)
        names = tuple(key[len(prefix) + 1 :] for key in store.list_files(prefix))
        return cls(store.url_for(prefix), names, lambda name: store.read_bytes(join_key(prefix, name)))


def verify_stored_scenario(
    store: DatasetStore, folder: str, *, scenario_id: str, promoted_files: Sequence[str] | None = None
) -> ScenarioVerification:
    """`verify_scenario` on the scenario folder ``folder`` of ``store``."""
    return verify_scenario(FolderReader.from_store(store, folder), scenario_id=scenario_id, promoted_files=promoted_files)


def verify_scenario(
    reader: FolderReader, *, scenario_id: str, promoted_files: Sequence[str] | None = None
) -> ScenarioVerification:
    """Verify one scenario folder (see the module doc).

    ``promoted_files`` are the file names the benchmark's entry recorded when the scenario was promoted: a file
    removed or added since (a certificate deleted to pass as uncertified) is a finding even when the folder's
    own manifest was rewritten to match. What the folder holds is reported as findings, never raised; a store
    that cannot be read raises `StoreError`.
    """
    started = time.perf_counter()
    location = reader.location
    findings = Findings(SAME_VERSION_TOLERANCES)

    def done(
        *, certificate: ScenarioCertificate | None = None, changes: Sequence[str] = (), note: str = ""
    ) -> ScenarioVerification:
        if findings.items:
            status = VerificationStatus.FLAGGED
        else:
            status = VerificationStatus.VERIFIED if certificate is not None else VerificationStatus.UNCERTIFIED
        return ScenarioVerification(
            scenario_id=scenario_id,
            location=location,
            status=status,
            findings=findings.items,
            checks=findings.checks,
            certified_versions=dict(certificate.versions) if certificate is not None else {},
            version_changes=list(changes),
            note=note,
            duration_s=round(time.perf_counter() - started, 4),
        )

    if COMMIT_MARKER not in reader.names:
        findings.add(
            Aspect.FILES,
            COMMIT_MARKER,
            "present",
            "absent",
            f"{location} is not a committed scenario folder (no {COMMIT_MARKER}): promote the scenario again or "
            "withdraw it",
        )
        return done()
    if promoted_files is not None:
        _check_promoted_files(reader, promoted_files, findings)
    try:
        raw = reader.read(MANIFEST_FILE)
    except ObjectNotFoundError:
        message = f"{location} has no {MANIFEST_FILE}: restore the folder from a copy"
        findings.add(Aspect.FILES, MANIFEST_FILE, "present", "absent", message)
        return done()
    try:
        manifest = parse_scenario_manifest(raw, url=f"{location}/{MANIFEST_FILE}")
    except StoreError as err:
        findings.add(Aspect.FILES, MANIFEST_FILE, "a scenario manifest", "unreadable", str(err))
        return done()
    contents = _check_hashes(reader, manifest, findings)

    if CERTIFICATE_FILE not in contents:
        return done(
            note=f"no {CERTIFICATE_FILE}: scenario {manifest.id} was validated before scenario folders carried a "
            "certificate, so only its file hashes were checked; certify it by re-validating it (`scenarios revalidate "
            f"{manifest.id}`) and promoting it again"
        )
    certificate = _parse_certificate(contents[CERTIFICATE_FILE], f"{location}/{CERTIFICATE_FILE}", findings)
    if certificate is None:
        return done()
    _check_certificate(certificate, manifest, contents, findings)
    now = library_versions()
    changes = [
        f"{key} {certificate.versions.get(key, '?')} -> {now.get(key, '?')}"
        for key in PHYSICS_VERSION_KEYS
        if certificate.versions.get(key) != now.get(key)
    ]
    if changes:
        findings.tolerances = VERSION_CHANGE_TOLERANCES
    rerun_stages(contents, certificate, location, findings)
    return done(certificate=certificate, changes=changes)


def _check_promoted_files(reader: FolderReader, promoted_files: Sequence[str], findings: Findings) -> None:
    """The folder holds exactly the files it was promoted with."""
    held = set(reader.names) - {COMMIT_MARKER}
    promoted = set(promoted_files)
    findings.checks += 1
    for name in sorted(promoted - held):
        findings.add(
            Aspect.FILES, name, "present (promoted with it)", "absent",
            f"{reader.location}/{name} was in the folder when it was promoted and is gone: restore the folder from a copy",
        )
    for name in sorted(held - promoted):
        findings.add(
            Aspect.FILES, name, "absent (not promoted with it)", "present",
            f"{reader.location}/{name} was added after the scenario was promoted",
        )


def _check_hashes(reader: FolderReader, manifest: ScenarioManifest, findings: Findings) -> dict[str, bytes]:
    """Every file the manifest lists, read and hashed; a finding for each missing, changed or unlisted file."""
    contents: dict[str, bytes] = {}
    for entry in manifest.files:
        findings.checks += 1
        try:
            data = reader.read(validate_key(entry.path))
        except ConfigError as err:  # a manifest is read from the store: a path like '../x' is a finding
            findings.add(Aspect.FILES, entry.path, "a path inside the folder", "not one", f"{MANIFEST_FILE} lists {err}")
            continue
        except ObjectNotFoundError:
            findings.add(
                Aspect.FILES, entry.path, f"sha256 {entry.sha256[:16]}…", "absent",
                f"{reader.location}/{entry.path} is listed in the manifest but missing: restore the folder from a copy",
            )
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            findings.add(
                Aspect.FILES, entry.path, f"sha256 {entry.sha256[:16]}…", f"sha256 {digest[:16]}…",
                f"{reader.location}/{entry.path} differs from the hash in its manifest ({len(data)} bytes, "
                f"{entry.size_bytes} listed): the file changed after validation",
            )
        contents[entry.path] = data
    listed = {entry.path for entry in manifest.files} | {MANIFEST_FILE, COMMIT_MARKER}
    for name in sorted(set(reader.names) - listed):
        findings.add(
            Aspect.FILES, name, "not in the folder", "present",
            f"{reader.location}/{name} is in the folder but not in its manifest: a file was added after validation",
        )
    return contents


def _parse_certificate(data: bytes, url: str, findings: Findings) -> ScenarioCertificate | None:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        findings.add(
            Aspect.CERTIFICATE, CERTIFICATE_FILE, "a scenario certificate", "not JSON",
            f"{url} is not valid JSON ({type(err).__name__}): restore the folder from a copy",
        )
        return None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if type(version) is int and version > CERTIFICATE_FORMAT_VERSION:
        findings.add(
            Aspect.CERTIFICATE, CERTIFICATE_FILE, f"format_version <= {CERTIFICATE_FORMAT_VERSION}", str(version),
            f"{url} is newer than this scenario_lib understands: upgrade scenario_lib to verify it",
        )
        return None
    try:
        certificate = ScenarioCertificate.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        findings.add(
            Aspect.CERTIFICATE, CERTIFICATE_FILE, "a scenario certificate", "unreadable",
            f"{url} is not a certificate ({first['msg']} at {first['loc']}): restore the folder from a copy",
        )
        return None
    try:
        certificate.stored_seed  # noqa: B018 - the seed the folder's scene was built with must be listed
    except KeyError as err:
        findings.add(Aspect.CERTIFICATE, CERTIFICATE_FILE, "the stored seed", "absent", f"{url}: {err.args[0]}")
        return None
    return certificate


def _check_certificate(
    certificate: ScenarioCertificate, manifest: ScenarioManifest, contents: Mapping[str, bytes], findings: Findings
) -> None:
    """The certificate agrees with the manifest and the files: id, script, demonstration and every hash."""
    findings.expect(
        Aspect.CERTIFICATE, "scenario_id", certificate.scenario_id == manifest.id,
        expected=manifest.id, measured=certificate.scenario_id,
        message=f"the certificate is scenario {certificate.scenario_id}'s, the folder holds {manifest.id}",
    )
    findings.expect(
        Aspect.CERTIFICATE, "script_sha256", certificate.script_sha256 == manifest.script_sha256,
        expected=manifest.script_sha256[:16], measured=certificate.script_sha256[:16],
        message="the certificate was issued for another script than the manifest's",
    )
    listed = {entry.path: entry.sha256 for entry in manifest.files if entry.path != CERTIFICATE_FILE}
    for path in sorted(set(listed) | set(certificate.files)):
        certified, found = certificate.files.get(path), listed.get(path)
        findings.expect(
            Aspect.FILES, path, certified == found,
            expected=f"sha256 {(certified or 'not certified')[:16]}", measured=f"sha256 {(found or 'not listed')[:16]}",
            message=f"{path}: the manifest and the certificate disagree about this file (one of them was rewritten)",
        )
    demonstration = contents.get(DEMONSTRATION_FILE)
    digest = hashlib.sha256(demonstration).hexdigest() if demonstration is not None else "absent"
    findings.expect(
        Aspect.REPLAY, DEMONSTRATION_FILE, digest == certificate.demonstration.sha256,
        expected=certificate.demonstration.sha256[:16], measured=digest[:16],
        message="the stored demonstration is not the certified one",
    )


def verify_benchmark_folders(store: DatasetStore, folders: Sequence[tuple[str, str]]) -> list[ScenarioVerification]:
    """`verify_stored_scenario` for each ``(scenario_id, folder)``, in order."""
    return [verify_stored_scenario(store, folder, scenario_id=scenario_id) for scenario_id, folder in folders]


__all__ = [
    "Aspect",
    "BenchmarkVerification",
    "EXACT",
    "Finding",
    "FolderReader",
    "SAME_VERSION_TOLERANCES",
    "ScenarioVerification",
    "Tolerance",
    "VERSION_CHANGE_TOLERANCES",
    "VerificationStatus",
    "verify_benchmark_folders",
    "verify_scenario",
    "verify_stored_scenario",
]
