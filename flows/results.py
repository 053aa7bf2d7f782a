"""What the flows return: pydantic models, so a flow run's result is readable data in and out of Prefect."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from scenario_lib.runs.generation import SeedOutcome, StageCount
from scenario_lib.runs.promotion import PromotionResult


class SeedRun(BaseModel):
    """One seed's outcome and when its task held a generation slot (None for a seed reused from an earlier try)."""

    outcome: SeedOutcome
    slot_acquired_at: datetime | None = None
    slot_released_at: datetime | None = None


class GenerationResult(BaseModel):
    """A generate flow run: how many scenarios passed, per-stage counts, where they are and every seed."""

    run_id: str
    tier: str
    count: int
    passed: int
    failed: int
    complete: bool
    duration_s: float
    stage_counts: dict[str, StageCount]
    staging_url: str = Field(description="Where passed scenarios are: staging/{run_id}_{seed}/ under this URL.")
    failures_url: str = Field(description="Where failed seeds are kept with their reports, for RL.")
    run_record_url: str
    seeds: list[SeedRun] = Field(default_factory=list)

    def describe(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        return (
            f"run {self.run_id}: {self.passed}/{self.count} scenarios passed ({state}), {self.failed} failed seeds "
            f"in {self.duration_s:.1f} s; staged under {self.staging_url}/{self.run_id}_*"
        )


class ReviewResult(BaseModel):
    """A review flow run: what the reviewer approved (and was promoted) and what stays in staging."""

    run_id: str
    dest: str
    approved: list[str]
    rejected: list[str]
    comment: str = ""
    promotion: PromotionResult | None = None


__all__ = ["GenerationResult", "ReviewResult", "SeedRun"]
