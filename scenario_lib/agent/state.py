"""The agent's typed state: the request, the plan, the review verdict, feedback and the run's record.

Models that cross a trust boundary (LLM output: `ScenarioPlan`, `ReviewVerdict`; caller input:
`GenerationRequest`, `HumanEdit`) are pydantic; `AgentState` is the LangGraph state (a TypedDict whose
list fields accumulate); `AgentContext` carries the run's collaborators (chat model, validator,
tracer), which are not state and are never checkpointed.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Protocol, TypedDict

from langchain_core.language_models import BaseChatModel
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import BaseModel, ConfigDict, Field

from scenario_lib.report import Metric, Stage, ValidationReport
from scenario_lib.tiers import Tier

if TYPE_CHECKING:
    from scenario_lib.agent.examples import ExampleScript
    from scenario_lib.agent.prompts import PromptSet
    from scenario_lib.validation.pipeline import SeedValidation

DEFAULT_MAX_ATTEMPTS = 4


class AgentRole(StrEnum):
    """Which prompt a model call answered."""

    PLANNER = "planner"
    CODER = "coder"
    REVIEWER = "reviewer"


class StopReason(StrEnum):
    """Why a generation ended."""

    ACCEPTED = "accepted"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # the last attempt failed validation
    REVIEWER_REJECTED = "reviewer_rejected"  # the last attempt was rejected by the reviewer
    STOPPED_BY_USER = "stopped_by_user"


class FeedbackOrigin(StrEnum):
    REVIEWER = "reviewer"
    VERIFIER = "verifier"
    HUMAN = "human"


class PauseKind(StrEnum):
    """Where an interactive run paused."""

    PLAN = "plan"  # after planning: resume with the plan, or an edited one
    ATTEMPT_FAILED = "attempt_failed"  # after a failed attempt: resume with code, a note, or stop


class GenerationRequest(BaseModel):
    """What to generate: the tier, an optional prompt (defaults to the tier's), the base seed, the model."""

    model_config = ConfigDict(frozen=True)

    tier: Tier
    prompt: str | None = None
    seed: int = 0
    provider: str = "offline"
    model: str | None = None


class ScaleRange(BaseModel):
    """Per-axis (x, y, z) scale limits the planned script should declare."""

    low: tuple[float, float, float] = (0.5, 0.5, 0.5)
    high: tuple[float, float, float] = (2.0, 2.0, 2.0)


class PlannedParameter(BaseModel):
    name: str
    low: float
    high: float
    unit: str = "mm"


class ScenarioPlan(BaseModel):
    """The planner's design: what the coder must build and how the script checks itself."""

    family: str = Field(min_length=1, max_length=64)
    summary: str = ""
    geometric_requirements: list[str] = Field(default_factory=list)
    parameter_ranges: list[PlannedParameter] = Field(default_factory=list)
    scale_limits: ScaleRange = ScaleRange()
    learning_objectives: list[str] = Field(default_factory=list)
    verification_strategy: str = ""
    # How a demonstration reaches success (pick and place into the zone, drive the joint to its range):
    # what the solvability stage's hand will do, so the design leaves it room.
    demonstration_strategy: str = ""


class ReviewVerdict(BaseModel):
    """The reviewer's answer: approve the code for validation, or list what to fix first."""

    approve: bool
    issues: list[str] = Field(default_factory=list)


class Feedback(BaseModel):
    """Why an attempt failed, in the form the coder receives it."""

    origin: FeedbackOrigin
    attempt: int
    message: str
    stage: Stage | None = None
    seed: int | None = None
    scale: tuple[float, float, float] | None = None
    metrics: dict[str, Metric] = Field(default_factory=dict)
    stage_pass_rates: dict[str, float] = Field(default_factory=dict)


class ModelCall(BaseModel):
    """One chat-model call: its role, model, token usage and estimated cost (None when no price is known)."""

    role: AgentRole
    attempt: int
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    duration_s: float = 0.0


class AttemptRecord(BaseModel):
    """One coder attempt and how far it got."""

    attempt: int
    script_sha256: str
    approved_by_reviewer: bool
    passed: bool
    stage_reached: Stage
    reward: float
    feedback: Feedback | None = None
    human_code: bool = False


class HumanEdit(BaseModel):
    """What an interactive caller resumes a paused run with; every field is optional.

    After planning: ``plan`` replaces the plan. After a failed attempt: ``source`` replaces the code (it
    goes straight to validation and counts as an attempt), ``note`` is added to the coder's feedback.
    ``stop`` ends the run.
    """

    plan: ScenarioPlan | None = None
    source: str | None = None
    note: str | None = None
    stop: bool = False


class AgentState(TypedDict, total=False):
    """The LangGraph state; ``feedback``, ``attempts`` and ``calls`` accumulate across nodes."""

    request: GenerationRequest
    max_attempts: int
    pause_after_plan: bool
    pause_on_failure: bool
    plan: ScenarioPlan | None
    source: str
    attempt: int
    human_code: bool
    feedback: Annotated[list[Feedback], operator.add]
    attempts: Annotated[list[AttemptRecord], operator.add]
    calls: Annotated[list[ModelCall], operator.add]
    report: ValidationReport | None
    stop_reason: StopReason | None
    stop_message: str


class ScriptValidator(Protocol):
    """What the verifier node needs: `scenario_lib.validation.pipeline.Validator` satisfies it."""

    def validate_script(
        self, source: str, *, base_seed: int = 0, render_preview: bool = False
    ) -> tuple[ValidationReport, SeedValidation]: ...


@dataclass
class AgentContext:
    """The run's collaborators, handed to every node through LangGraph's runtime context.

    ``examples`` is the library the coder's few-shot examples are retrieved from; ``prompts`` the role
    instructions (defaults, or a user's overrides). ``seed_validations`` collects each validated script's base-seed result (keyed by script sha256): it
    holds scenes and meshes, which stay out of the checkpointed state. ``root_context`` is the
    OpenTelemetry context the run's spans nest under; ``attempt_spans`` holds the open span of each
    attempt while its coder, reviewer and verifier nodes run.
    """

    chat_model: BaseChatModel
    validator: ScriptValidator
    provider: str = "offline"
    model_name: str = "offline-architect"
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer("scenario_lib.agent"))
    capture_content: bool = True
    render_preview: bool = False
    secrets: Sequence[str] = ()
    root_context: Context | None = None
    seed_validations: dict[str, SeedValidation] = field(default_factory=dict)
    attempt_spans: dict[int, trace.Span] = field(default_factory=dict)
    examples: Sequence[ExampleScript] = ()
    prompts: PromptSet | None = None  # None: the default instructions


def initial_state(
    request: GenerationRequest,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    pause_after_plan: bool = False,
    pause_on_failure: bool = False,
) -> AgentState:
    """The state a generation starts from."""
    if max_attempts < 1:
        from scenario_lib.errors import ConfigError

        raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}; the default is {DEFAULT_MAX_ATTEMPTS}")
    return AgentState(
        request=request,
        max_attempts=max_attempts,
        pause_after_plan=pause_after_plan,
        pause_on_failure=pause_on_failure,
        plan=None,
        source="",
        attempt=0,
        human_code=False,
        feedback=[],
        attempts=[],
        calls=[],
        report=None,
        stop_reason=None,
        stop_message="",
    )
