"""Validation report models: one `StageResult` per stage and seed, gathered in a `ValidationReport`.

These are stored as ``validation.json`` next to every scenario and read back by the CLI, the flows
and the trace exporter, so they are pydantic models.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

Metric = float | int | bool | str


class Stage(str, Enum):
    """The validation stages, in the order they run."""

    CODE = "code"
    GEOMETRY = "geometry"
    MJCF = "mjcf"
    STABILITY = "stability"
    TASK = "task"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"


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
        return all(result.passed for result in self.stages) and len(self.stages) == len(STAGE_ORDER)

    @property
    def first_failure(self) -> StageResult | None:
        return next((result for result in self.stages if result.verdict is Verdict.FAIL), None)

    @property
    def stage_reached(self) -> Stage:
        """The last stage that ran (the failing one, or TASK when all passed)."""
        failure = self.first_failure
        return failure.stage if failure else self.stages[-1].stage


class ValidationReport(BaseModel):
    """The outcome of validating one script across the randomization harness."""

    script_sha256: str
    seeds: list[SeedReport]
    versions: dict[str, str] = Field(default_factory=dict)
    duration_s: float = 0.0

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
