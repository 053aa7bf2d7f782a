"""The validation certificate of a passed scenario (``certificate.json`` in its folder).

It says what the validator checked and found, in a form a third party can re-check without running
the script (`scenario_lib.validation.verify`):

* every check of every stage with its threshold and the value measured, for every harness (seed, scale)
  with its verdicts (the thresholds are the stage modules' own constants, read when the certificate is made);
* the stored scene's seed, whose stage metrics are the reference the verifier compares its re-runs with;
* the demonstration's SHA-256 and metrics;
* the versions of build123d, OCP, MuJoCo and scenario-lib the verdicts were reached with;
* the SHA-256 of every other file of the folder (``manifest.json`` is written after it, and lists it).

A check whose value the report does not carry (the MJCF stage's per-body masses and sizes, the negative
control's distance) is listed with its threshold and ``measured`` None: the stage checked it, and
`verify` measures what it can of it again.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from scenario_lib.errors import ConfigError
from scenario_lib.report import Metric, SeedReport, Stage, ValidationReport, Verdict
from scenario_lib.scene.limits import DEFAULT_THRESHOLDS as limits
from scenario_lib.scene.limits import (
    DEEP_STEPS_BLOCKED,
    MAX_BODY_EXTENT_M,
    MAX_MOVING_MASS_KG,
    MAX_PENETRATION_MM,
    MAX_TIMESTEP_S,
    MESH_SCALE,
    MIN_BODY_EXTENT_M,
    MIN_MOVING_MASS_KG,
    NEGATIVE_MARGIN,
)
from scenario_lib.validation.pipeline import SeedValidation, library_versions

CERTIFICATE_FILE = "certificate.json"
CERTIFICATE_FORMAT_VERSION = 1


class Comparison(StrEnum):
    """How a measured value must relate to its threshold."""

    AT_MOST = "at_most"
    AT_LEAST = "at_least"
    ABOVE = "above"
    EQUALS = "equals"


@dataclass(frozen=True)
class CheckRule:
    """One check a stage makes: the metric (a glob over body names for per-body metrics) and its threshold."""

    name: str  # "<aspect>.<metric>", e.g. "stability.max_linear_speed_m_s", "at_rest.max_drift_mm"
    stage: Stage
    metric: str
    comparison: Comparison
    threshold: Metric
    unit: str
    rule: str

    def holds(self, measured: Metric) -> bool:
        """Whether ``measured`` meets the threshold by the comparison alone (see ``rule`` for exceptions)."""
        if self.comparison is Comparison.EQUALS:
            return measured == self.threshold
        value, limit = float(measured), float(self.threshold)
        if self.comparison is Comparison.AT_MOST:
            return value <= limit
        if self.comparison is Comparison.AT_LEAST:
            return value >= limit
        return value > limit


def stage_rules() -> tuple[CheckRule, ...]:
    """Every check of the stages, with the thresholds the stage modules use now."""
    geometry, mjcf, stability, task, solvability = Stage.GEOMETRY, Stage.MJCF, Stage.STABILITY, Stage.TASK, Stage.SOLVABILITY
    equals, at_most, at_least, above = Comparison.EQUALS, Comparison.AT_MOST, Comparison.AT_LEAST, Comparison.ABOVE
    return (
        CheckRule("geometry.n_solids", geometry, "*.n_solids", at_least, 1, "solids", "each body's part holds a solid"),
        CheckRule("geometry.is_valid", geometry, "*.is_valid", equals, True, "", "OCCT's BRepCheck accepts each part"),
        CheckRule("geometry.volume_mm3", geometry, "*.volume_mm3", above, 0.0, "mm³", "each part has a positive volume"),
        CheckRule(
            "geometry.self_intersecting", geometry, "*.self_intersecting", equals, False, "", "no part self-intersects"
        ),
        CheckRule("geometry.triangles", geometry, "*.triangles", above, 0, "triangles", "each mesh is non-empty"),
        CheckRule("geometry.watertight", geometry, "*.watertight", equals, True, "", "each mesh is closed"),
        CheckRule("mjcf.timestep_s", mjcf, "timestep_s", at_most, MAX_TIMESTEP_S, "s", "the timestep is positive and small"),
        CheckRule("mjcf.mesh_scale", mjcf, "mesh_scale", equals, MESH_SCALE, "", "meshes are in mm, scaled to m"),
        CheckRule(
            "mjcf.moving_mass_kg_min", mjcf, "moving_mass_kg", at_least, MIN_MOVING_MASS_KG, "kg", "each rigid moving piece"
        ),
        CheckRule(
            "mjcf.moving_mass_kg_max", mjcf, "moving_mass_kg", at_most, MAX_MOVING_MASS_KG, "kg", "each rigid moving piece"
        ),
        CheckRule("mjcf.body_extent_m_min", mjcf, "body_extent_m", at_least, MIN_BODY_EXTENT_M, "m", "each body's size"),
        CheckRule("mjcf.body_extent_m_max", mjcf, "body_extent_m", at_most, MAX_BODY_EXTENT_M, "m", "each body's size"),
        CheckRule(
            "stability.max_linear_speed_m_s",
            stability,
            "max_linear_speed_m_s",
            at_most,
            limits.max_linear_speed_m_s,
            "m/s",
            "no body's centre of mass moves faster, left alone",
        ),
        CheckRule(
            "stability.max_angular_speed_rad_s",
            stability,
            "max_angular_speed_rad_s",
            at_most,
            limits.max_angular_speed_rad_s,
            "rad/s",
            "no body spins faster, left alone",
        ),
        CheckRule(
            "stability.energy_gain_fraction",
            stability,
            "energy_gain_fraction",
            at_most,
            limits.max_energy_gain_fraction,
            "of m·g·extent",
            "a passive scene only loses energy",
        ),
        CheckRule(
            "stability.penetration_t0_mm",
            stability,
            "penetration_t0_mm",
            at_most,
            limits.max_penetration_initial_mm,
            "mm",
            "overlap at t=0; a contact inside its soft layer (solimp width) passes when nothing is pushed apart",
        ),
        CheckRule(
            "stability.penetration_after_settling_mm",
            stability,
            "penetration_after_settling_mm",
            at_most,
            limits.max_penetration_settling_mm,
            "mm",
            f"overlap after the first {limits.settling_time_s * 1000:g} ms",
        ),
        CheckRule(
            "stability.penetration_at_rest_mm",
            stability,
            "penetration_at_rest_mm",
            at_most,
            limits.max_penetration_rest_mm,
            "mm",
            f"overlap over the last {limits.rest_window_s * 1000:g} ms",
        ),
        CheckRule("stability.warnings", stability, "warnings", equals, 0, "warnings", "MuJoCo raised no warning"),
        CheckRule(
            "at_rest.max_drift_mm",
            stability,
            "max_drift_mm",
            at_most,
            limits.max_drift_mm,
            "mm",
            f"each movable body stays at its declared pose, relative to its support, after {limits.contact_settling_s:g} s",
        ),
        CheckRule(
            "at_rest.max_drift_deg",
            stability,
            "max_drift_deg",
            at_most,
            limits.max_drift_deg,
            "°",
            f"each movable body keeps its declared orientation, relative to its support, after {limits.contact_settling_s:g} s",
        ),
        CheckRule("task.goal_distance_t0", task, "goal_distance_t0", above, 0.0, "mm or °", "the task is not solved at t=0"),
        CheckRule(
            "negative_control.passive_goal_distance",
            solvability,
            "passive_goal_distance",
            at_least,
            NEGATIVE_MARGIN,
            "mm or °",
            "left alone, the scene ends clearly unsolved",
        ),
        CheckRule(
            "solvability.time_to_success_s",
            solvability,
            "time_to_success_s",
            at_least,
            0.0,
            "s",
            "the demonstration reached success (-1: never)",
        ),
        CheckRule(
            "solvability.max_penetration_mm",
            solvability,
            "max_penetration_mm",
            at_most,
            MAX_PENETRATION_MM,
            "mm",
            f"the hand pushes no body deeper into the fixed scene for {DEEP_STEPS_BLOCKED} control steps in a row",
        ),
    )


class CheckRecord(BaseModel):
    """One check on one seed: its rule, threshold and the measured value (None: the report carries none)."""

    model_config = ConfigDict(frozen=True)

    name: str
    metric: str
    comparison: Comparison
    threshold: Metric
    unit: str = ""
    measured: Metric | None = None
    rule: str = ""


class StageCertificate(BaseModel):
    """One stage on one seed: its verdict, its checks, and every metric it recorded."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    verdict: Verdict
    checks: list[CheckRecord] = Field(default_factory=list)
    metrics: dict[str, Metric] = Field(default_factory=dict)


class SeedCertificate(BaseModel):
    """One harness build: its seed, scale and the verdict of every stage."""

    model_config = ConfigDict(frozen=True)

    seed: int
    scale: tuple[float, float, float]
    passed: bool
    stages: list[StageCertificate]

    def stage(self, stage: Stage) -> StageCertificate | None:
        return next((item for item in self.stages if item.stage is stage), None)


class DemonstrationRecord(BaseModel):
    """The stored demonstration: its hash, where it came from, its length and the solvability stage's metrics."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    source: str
    steps: int
    metrics: dict[str, Metric] = Field(default_factory=dict)


class ScenarioCertificate(BaseModel):
    """``certificate.json``: what a passed scenario was checked against and what was measured (module doc)."""

    model_config = ConfigDict(frozen=True)

    format_version: int = CERTIFICATE_FORMAT_VERSION
    scenario_id: str
    script_sha256: str
    issued_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    scene_seed: int  # the seed whose scene the folder stores: its metrics are the verifier's reference
    scene_scale: tuple[float, float, float]
    passive_duration_s: float  # how long the stability stage simulated the scene left alone
    seeds: list[SeedCertificate]
    demonstration: DemonstrationRecord
    versions: dict[str, str]
    files: dict[str, str]  # path in the folder -> SHA-256, every file but this one and manifest.json

    @property
    def stored_seed(self) -> SeedCertificate:
        """The certificate of the seed whose scene is stored."""
        for seed in self.seeds:
            if seed.seed == self.scene_seed and seed.scale == self.scene_scale:
                return seed
        raise KeyError(f"the certificate lists no seed {self.scene_seed} at scale {self.scene_scale}")


def _checks(stage: Stage, metrics: Mapping[str, Metric], rules: tuple[CheckRule, ...]) -> list[CheckRecord]:
    records = []
    for rule in rules:
        if rule.stage is not stage:
            continue
        if "*" in rule.metric:  # a per-body metric: one record per body
            names = sorted(name for name in metrics if fnmatch.fnmatchcase(name, rule.metric))
        else:
            names = [rule.metric]
        for name in names:
            records.append(
                CheckRecord(
                    name=rule.name,
                    metric=name,
                    comparison=rule.comparison,
                    threshold=rule.threshold,
                    unit=rule.unit,
                    measured=metrics.get(name),
                    rule=rule.rule,
                )
            )
    return records


def _seed_certificate(seed: SeedReport, rules: tuple[CheckRule, ...]) -> SeedCertificate:
    stages = [
        StageCertificate(
            stage=result.stage,
            verdict=result.verdict,
            checks=_checks(result.stage, result.metrics, rules) if result.verdict is not Verdict.SKIPPED else [],
            metrics=dict(result.metrics),
        )
        for result in seed.stages
    ]
    return SeedCertificate(seed=seed.seed, scale=seed.scale, passed=seed.passed, stages=stages)


def build_certificate(
    *, scenario_id: str, report: ValidationReport, result: SeedValidation, files: Mapping[str, str]
) -> ScenarioCertificate:
    """The certificate of a passed scenario whose folder holds ``files`` (path -> SHA-256).

    ``result`` is the stored seed's validation (the folder holds its scene and demonstration). Raises
    `ConfigError` when the report did not pass or the result has no demonstration: only a passed scenario
    is certified.
    """
    if not report.passed or result.demonstration is None:
        raise ConfigError(
            f"scenario {scenario_id} did not pass validation with a demonstration ({report.summary()}): only a "
            "passed scenario is certified"
        )
    rules = stage_rules()
    stored = result.report
    metrics = {item.stage: item.metrics for item in stored.stages}
    duration_s = metrics.get(Stage.STABILITY, {}).get("sim_time_s")
    if not isinstance(duration_s, (int, float)) or Stage.SOLVABILITY not in metrics:
        raise ConfigError(
            f"the report of scenario {scenario_id} has no stability duration or solvability metrics (format "
            f"{report.format_version}): re-validate it with this scenario_lib to certify it"
        )
    solvability = metrics[Stage.SOLVABILITY]
    return ScenarioCertificate(
        scenario_id=scenario_id,
        script_sha256=report.script_sha256,
        scene_seed=stored.seed,
        scene_scale=stored.scale,
        passive_duration_s=float(duration_s),
        seeds=[_seed_certificate(seed, rules) for seed in report.seeds],
        demonstration=DemonstrationRecord(
            sha256=hashlib.sha256(result.demonstration).hexdigest(),
            source=str(solvability.get("demonstration", "")),
            steps=int(solvability.get("steps", 0)),
            metrics=dict(solvability),
        ),
        versions=dict(report.versions or library_versions()),
        files=dict(sorted(files.items())),
    )


__all__ = [
    "CERTIFICATE_FILE",
    "CERTIFICATE_FORMAT_VERSION",
    "CheckRecord",
    "CheckRule",
    "Comparison",
    "DemonstrationRecord",
    "ScenarioCertificate",
    "SeedCertificate",
    "StageCertificate",
    "build_certificate",
    "stage_rules",
]
