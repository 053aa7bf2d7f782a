"""Validation report models: one `StageResult` per stage and seed, gathered in a `ValidationReport`.

These are stored as ``validation.json`` next to every scenario and read back by the CLI, the flows
and the trace exporter, so they are pydantic models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Metric = float | int | bool | str


class Stage(StrEnum):
    """How far a scenario got: the reviewer's check, then the validation stages in the order they run.

    `REVIEW` is not a validation stage (no `StageResult` has it): it is the ``stage_reached`` of a seed or
    attempt whose code the reviewer rejected, so it never reached validation. `STAGE_ORDER` lists the
    validation stages.
    """

    REVIEW = "review"
    CODE = "code"
    GEOMETRY = "geometry"
    MJCF = "mjcf"
    STABILITY = "stability"
    TASK = "task"
    SOLVABILITY = "solvability"


STAGE_ORDER: tuple[Stage, ...] = tuple(stage for stage in Stage if stage is not Stage.REVIEW)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    # The stage does not apply: a report stored before it existed, or a raw MJCF file (no task).
    NOT_APPLICABLE = "not_applicable"


# Version 2 added the solvability stage; version-1 reports read with it NOT_APPLICABLE.
REPORT_FORMAT_VERSION = 2


class StageResult(BaseModel):
    """The verdict of one stage on one (seed, scale), with its metrics and an actionable message."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    verdict: Verdict
    message: str = ""
    metrics: dict[str, Metric] = Field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @classmethod
    def passing(cls, stage: Stage, metrics: dict[str, Metric] | None = None, duration_s: float = 0.0) -> StageResult:
        return cls(stage=stage, verdict=Verdict.PASS, metrics=metrics or {}, duration_s=duration_s)

    @classmethod
    def failing(
        cls, stage: Stage, message: str, metrics: dict[str, Metric] | None = None, duration_s: float = 0.0
    ) -> StageResult:
        return cls(stage=stage, verdict=Verdict.FAIL, message=message, metrics=metrics or {}, duration_s=duration_s)


class SeedReport(BaseModel):
    """All stage results for one run of ``build(seed, scale)``."""

    seed: int
    scale: tuple[float, float, float]
    stages: list[StageResult]

    @property
    def passed(self) -> bool:
        """Every stage ran and passed (a stage that does not apply counts as passed)."""
        done = all(result.verdict in (Verdict.PASS, Verdict.NOT_APPLICABLE) for result in self.stages)
        return done and {result.stage for result in self.stages} == set(STAGE_ORDER)

    @property
    def first_failure(self) -> StageResult | None:
        return next((result for result in self.stages if result.verdict is Verdict.FAIL), None)

    @property
    def stage_reached(self) -> Stage:
        """The last stage that ran (the failing one, or the last applicable one when all passed)."""
        failure = self.first_failure
        if failure:
            return failure.stage
        ran = [result.stage for result in self.stages if result.verdict is Verdict.PASS]
        return ran[-1] if ran else self.stages[-1].stage


class ValidationReport(BaseModel):
    """The outcome of validating one script across the randomization harness."""

    format_version: int = REPORT_FORMAT_VERSION
    script_sha256: str
    seeds: list[SeedReport]
    versions: dict[str, str] = Field(default_factory=dict)
    duration_s: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Read a version-1 report (no solvability stage): the stage is recorded as not applicable."""
        if not isinstance(data, dict) or data.get("format_version", 1) >= REPORT_FORMAT_VERSION:
            return data
        seeds = []
        for seed in data.get("seeds", []):
            if not isinstance(seed, dict):
                seeds.append(seed)
                continue
            stages = list(seed.get("stages", []))
            if not any(isinstance(s, dict) and s.get("stage") == Stage.SOLVABILITY.value for s in stages):
                failed = any(isinstance(s, dict) and s.get("verdict") == Verdict.FAIL.value for s in stages)
                stages.append(
                    {
                        "stage": Stage.SOLVABILITY.value,
                        "verdict": (Verdict.SKIPPED if failed else Verdict.NOT_APPLICABLE).value,
                        "message": "validated before the solvability stage existed (report format 1); "
                        "`scenarios revalidate` runs it",
                    }
                )
            seeds.append({**seed, "stages": stages})
        return {**data, "format_version": REPORT_FORMAT_VERSION, "seeds": seeds}

    @property
    def passed(self) -> bool:
        return bool(self.seeds) and all(seed.passed for seed in self.seeds)

    @property
    def first_failure(self) -> tuple[SeedReport, StageResult] | None:
        for seed_report in self.seeds:
            failure = seed_report.first_failure
            if failure is not None:
                return seed_report, failure
        return None

    def pass_rate(self, stage: Stage) -> float:
        """Fraction of seeds whose ``stage`` passed (a stage never reached counts as not passed)."""
        if not self.seeds:
            return 0.0
        passed = sum(
            1 for seed in self.seeds for result in seed.stages if result.stage is stage and result.passed
        )
        return passed / len(self.seeds)

    def summary(self) -> str:
        """One line: verdict and the first failure with its seed and scale."""
        if self.passed:
            return f"passed all stages on {len(self.seeds)} seed(s)"
        found = self.first_failure
        if found is None:
            return "no seed was validated"
        seed_report, failure = found
        scale = ", ".join(f"{value:.3g}" for value in seed_report.scale)
        return f"{failure.stage.value} failed at seed {seed_report.seed}, scale ({scale}): {failure.message}"
