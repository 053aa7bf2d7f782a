"""The validation certificate: written for a passed scenario (real sandbox, real build123d and MuJoCo), listed in
its manifest, holding every check with the stage modules' thresholds, every harness seed, the demonstration,
the versions and every file's hash; and a freshly written folder verifies against it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from scenario_lib.config import SandboxMode
from scenario_lib.errors import ConfigError
from scenario_lib.report import Stage, StageResult, Verdict
from scenario_lib.sandbox.pool import SandboxPool
from scenario_lib.scene.demonstration import Demonstration
from scenario_lib.scene.limits import DEFAULT_THRESHOLDS, MAX_TIMESTEP_S, NEGATIVE_MARGIN
from scenario_lib.store import DatasetStore
from scenario_lib.store.commit import commit_scenario
from scenario_lib.store.layout import staging_prefix
from scenario_lib.validation.artifacts import DEMONSTRATION_FILE, MANIFEST_FILE, ScenarioManifest, write_scenario_folder
from scenario_lib.validation.certificate import (
    CERTIFICATE_FILE,
    Comparison,
    ScenarioCertificate,
    build_certificate,
    stage_rules,
)
from scenario_lib.validation.pipeline import HarnessConfig, SeedValidation, Validator
from scenario_lib.validation.verify import VerificationStatus, verify_stored_scenario
from scenario_lib.report import ValidationReport
from tests.support import REPO

PEG_IN_HOLE = (REPO / "examples" / "tier1_peg_in_hole.py").read_text(encoding="utf-8")
MODE = SandboxMode.BWRAP if shutil.which("bwrap") and shutil.which("setpriv") else SandboxMode.RLIMITS
SCENARIO_ID = "cert-run_3"
# Checks whose rule has an exception the bare comparison does not express (see their `rule` text).
QUALIFIED_CHECKS = {"stability.penetration_t0_mm", "solvability.max_penetration_mm"}


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationReport, SeedValidation]:
    config = HarnessConfig(seeds=2, decomposition_cache_dir=tmp_path_factory.mktemp("coacd"))
    with SandboxPool(workers=2, mode=MODE) as pool:
        report, result = Validator(pool, config).validate_script(PEG_IN_HOLE, base_seed=3)
    assert report.passed, report.summary()
    return report, result


@pytest.fixture(scope="module")
def folder(validated: tuple[ValidationReport, SeedValidation], tmp_path_factory: pytest.TempPathFactory) -> Path:
    report, result = validated
    target = tmp_path_factory.mktemp("folder") / SCENARIO_ID
    write_scenario_folder(
        target, scenario_id=SCENARIO_ID, tier="tier1", prompt="a peg", author="offline:test", source=PEG_IN_HOLE,
        report=report, result=result,
    )
    return target


def certificate_of(folder: Path) -> ScenarioCertificate:
    return ScenarioCertificate.model_validate_json((folder / CERTIFICATE_FILE).read_bytes())


def test_the_certificate_is_listed_in_the_manifest_and_hashes_every_other_file(folder: Path) -> None:
    manifest = ScenarioManifest.model_validate_json((folder / MANIFEST_FILE).read_bytes())
    listed = {entry.path: entry.sha256 for entry in manifest.files}
    assert listed[CERTIFICATE_FILE] == hashlib.sha256((folder / CERTIFICATE_FILE).read_bytes()).hexdigest()
    certificate = certificate_of(folder)
    on_disk = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert set(certificate.files) == on_disk - {CERTIFICATE_FILE, MANIFEST_FILE}
    for path, digest in certificate.files.items():
        assert digest == hashlib.sha256((folder / path).read_bytes()).hexdigest() == listed[path], path
    assert certificate.scenario_id == SCENARIO_ID and certificate.script_sha256 == manifest.script_sha256


def test_it_lists_every_harness_seed_and_scale_with_the_verdict_of_every_stage(
    folder: Path, validated: tuple[ValidationReport, SeedValidation]
) -> None:
    report, result = validated
    certificate = certificate_of(folder)
    assert [(seed.seed, seed.scale) for seed in certificate.seeds] == [(seed.seed, seed.scale) for seed in report.seeds]
    assert len(certificate.seeds) == 2
    for seed, reported in zip(certificate.seeds, report.seeds):
        assert seed.passed and [(stage.stage, stage.verdict) for stage in seed.stages] == [
            (stage.stage, stage.verdict) for stage in reported.stages
        ]
    assert (certificate.scene_seed, certificate.scene_scale) == (result.report.seed, result.report.scale)
    assert certificate.passive_duration_s == pytest.approx(HarnessConfig().sim_duration_s, abs=0.01)


def test_every_check_carries_the_stage_modules_threshold_and_the_measured_value(
    folder: Path, validated: tuple[ValidationReport, SeedValidation]
) -> None:
    report, _ = validated
    certificate = certificate_of(folder)
    thresholds = {check.name: check.threshold for seed in certificate.seeds for stage in seed.stages for check in stage.checks}
    assert thresholds["stability.max_linear_speed_m_s"] == DEFAULT_THRESHOLDS.max_linear_speed_m_s
    assert thresholds["stability.energy_gain_fraction"] == DEFAULT_THRESHOLDS.max_energy_gain_fraction
    assert thresholds["at_rest.max_drift_mm"] == DEFAULT_THRESHOLDS.max_drift_mm
    assert thresholds["at_rest.max_drift_deg"] == DEFAULT_THRESHOLDS.max_drift_deg
    assert thresholds["mjcf.timestep_s"] == MAX_TIMESTEP_S
    assert thresholds["negative_control.passive_goal_distance"] == NEGATIVE_MARGIN
    rules = {rule.name: rule for rule in stage_rules()}
    assert set(thresholds) == set(rules)
    for seed, reported in zip(certificate.seeds, report.seeds):
        metrics = {result.stage: result.metrics for result in reported.stages}
        for stage in seed.stages:
            for check in stage.checks:
                assert check.measured == metrics[stage.stage].get(check.metric), check
                if check.measured is not None and check.name not in QUALIFIED_CHECKS:
                    # The stage passed, so each plain comparison holds on what it measured.
                    assert rules[check.name].holds(check.measured), check
    geometry = next(stage for stage in certificate.seeds[0].stages if stage.stage is Stage.GEOMETRY)
    assert {check.metric for check in geometry.checks if check.name == "geometry.watertight"} == {
        key for key in geometry.metrics if key.endswith(".watertight")
    }


def test_it_holds_the_demonstration_hash_and_metrics_and_the_library_versions(folder: Path) -> None:
    certificate = certificate_of(folder)
    data = (folder / DEMONSTRATION_FILE).read_bytes()
    assert certificate.demonstration.sha256 == hashlib.sha256(data).hexdigest()
    demonstration = Demonstration.from_json(data)
    assert certificate.demonstration.steps == len(demonstration.actions) > 0
    assert certificate.demonstration.source == demonstration.source
    assert certificate.demonstration.metrics["steps"] == len(demonstration.actions)
    assert {"build123d", "cadquery-ocp", "mujoco", "scenario-lib"} <= set(certificate.versions)


@pytest.mark.parametrize(
    ("comparison", "threshold", "measured", "holds"),
    [
        pytest.param(Comparison.AT_MOST, 5.0, 5.0, True, id="at-most-edge"),
        pytest.param(Comparison.AT_MOST, 5.0, 5.1, False, id="at-most-over"),
        pytest.param(Comparison.ABOVE, 0.0, 0.0, False, id="above-edge"),
        pytest.param(Comparison.AT_LEAST, 1, 1, True, id="at-least-edge"),
        pytest.param(Comparison.EQUALS, True, False, False, id="equals-bool"),
    ],
)
def test_a_rule_compares_by_its_comparison(comparison: Comparison, threshold: float, measured: float, holds: bool) -> None:
    rule = next(rule for rule in stage_rules() if rule.comparison is comparison)
    assert type(rule)(rule.name, rule.stage, rule.metric, comparison, threshold, rule.unit, rule.rule).holds(measured) is holds


def test_a_failed_report_gets_no_certificate(validated: tuple[ValidationReport, SeedValidation]) -> None:
    report, result = validated
    seed = report.seeds[0]
    failing = seed.model_copy(
        update={"stages": [*seed.stages[:-1], StageResult(stage=Stage.SOLVABILITY, verdict=Verdict.FAIL, message="blocked")]}
    )
    with pytest.raises(ConfigError, match="only a passed scenario is certified"):
        build_certificate(scenario_id=SCENARIO_ID, report=report.model_copy(update={"seeds": [failing]}), result=result, files={})


def test_a_freshly_written_folder_verifies_against_its_certificate(folder: Path, tmp_path: Path) -> None:
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    commit_scenario(store, folder, staging_prefix(SCENARIO_ID))

    verification = verify_stored_scenario(store, staging_prefix(SCENARIO_ID), scenario_id=SCENARIO_ID)

    assert verification.status is VerificationStatus.VERIFIED, verification.findings
    assert verification.checks >= 30 and verification.version_changes == []
