"""The Scenario Architect graph (plan → code → review → verify, failures back to the coder) and its runners.

`build_graph` wires the nodes; `run_agent` runs one generation to its verdict; `AgentSession` is the
interactive path: it pauses after planning and/or after each failed attempt (LangGraph ``interrupt``
with a checkpointer), hands the caller a `Pause`, and resumes with a `HumanEdit`. One generation is one
trace: an ``invoke_agent`` root span (nested under the caller's current span, e.g. a Prefect task's),
a ``chat`` span for the plan, and one span per attempt holding its chat and ``execute_tool`` spans.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from scenario_lib.agent.examples import ExampleScript, family_examples
from scenario_lib.agent.nodes import (
    AWAIT_PLAN_EDIT,
    AWAIT_REPAIR,
    CODER,
    PLANNER,
    REVIEWER,
    VERIFIER,
    await_plan_edit_node,
    await_repair_node,
    code_node,
    end_open_attempts,
    plan_node,
    review_node,
    script_sha256,
    verify_node,
)
from scenario_lib.agent.prompts import PromptSet
from scenario_lib.agent.state import (
    DEFAULT_MAX_ATTEMPTS,
    AgentContext,
    AgentState,
    AgentRole,
    AttemptRecord,
    Feedback,
    FeedbackOrigin,
    GenerationRequest,
    HumanEdit,
    ModelCall,
    PauseKind,
    PlannedParameter,
    ScaleRange,
    ScenarioPlan,
    ScriptValidator,
    StopReason,
    initial_state,
)
from scenario_lib.config import LlmProvider
from scenario_lib.errors import ConfigError
from scenario_lib.agent.providers import SEMCONV_PROVIDER_NAMES
from scenario_lib.report import SeedReport, Stage, StageResult, ValidationReport, Verdict
from scenario_lib.tiers import Tier
from scenario_lib.tracing import (
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    OPERATION_INVOKE_AGENT,
    redact,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from scenario_lib.validation.pipeline import SeedValidation

AGENT_NAME = "scenario_architect"
TRACER_NAME = "scenario_lib.agent"
# Every type the state holds: the checkpointer deserializes only these (LangGraph warns on, and will
# refuse, unregistered types).
CHECKPOINT_TYPES: tuple[type, ...] = (
    AgentRole,
    AttemptRecord,
    Feedback,
    FeedbackOrigin,
    GenerationRequest,
    ModelCall,
    PlannedParameter,
    ScaleRange,
    ScenarioPlan,
    SeedReport,
    Stage,
    StageResult,
    StopReason,
    Tier,
    ValidationReport,
    Verdict,
)


def make_checkpointer() -> InMemorySaver:
    """An in-memory checkpointer that restores exactly the agent state's types."""
    return InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))


def build_graph(*, checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph; ``checkpointer`` defaults to an in-memory one (pauses need a checkpointer).

    Invoke it with `initial_state(...)`, ``config={"configurable": {"thread_id": ...}}`` and
    ``context=AgentContext(...)``; resume a pause with ``Command(resume=HumanEdit(...).model_dump())``.
    """
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node(PLANNER, plan_node)
    graph.add_node(AWAIT_PLAN_EDIT, await_plan_edit_node)
    graph.add_node(CODER, code_node)
    graph.add_node(REVIEWER, review_node)
    graph.add_node(VERIFIER, verify_node)
    graph.add_node(AWAIT_REPAIR, await_repair_node)
    graph.add_edge(START, PLANNER)
    return graph.compile(checkpointer=checkpointer if checkpointer is not None else make_checkpointer(), name=AGENT_NAME)


@dataclass(frozen=True)
class TokenUsage:
    """Tokens and estimated cost summed over a generation's model calls (cost None if any price is unknown)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    calls: int

    @classmethod
    def from_calls(cls, calls: Sequence[ModelCall]) -> TokenUsage:
        costs = [call.cost_usd for call in calls]
        return cls(
            input_tokens=sum(call.input_tokens for call in calls),
            output_tokens=sum(call.output_tokens for call in calls),
            cost_usd=None if any(cost is None for cost in costs) else round(sum(c or 0.0 for c in costs), 8),
            calls=len(calls),
        )


@dataclass(frozen=True)
class AgentOutcome:
    """How a generation ended: the last script, its validation, every attempt and why it stopped."""

    verdict: StopReason
    message: str
    source: str
    report: ValidationReport | None
    seed_validation: SeedValidation | None
    attempts: list[AttemptRecord]
    plan: ScenarioPlan | None
    usage: TokenUsage
    calls: list[ModelCall] = field(default_factory=list)
    trace_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is StopReason.ACCEPTED


@dataclass(frozen=True)
class Pause:
    """A paused run: where it paused (`PauseKind`); ``payload`` holds the plan or the feedback and code."""

    kind: PauseKind
    payload: dict[str, Any]
    thread_id: str


def _provider_name(provider: str) -> str:
    try:
        return SEMCONV_PROVIDER_NAMES[LlmProvider(provider)]
    except ValueError:
        return provider


def _model_of(chat_model: BaseChatModel) -> str:
    for attribute in ("model_name", "model"):
        value = getattr(chat_model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


class AgentSession:
    """One generation that can pause for a human: `start`, then `resume` after each `Pause`.

    Keeps the run's root span open across pauses; the graph's state lives in the checkpointer under
    ``thread_id``.
    """

    def __init__(
        self,
        request: GenerationRequest,
        *,
        validator: ScriptValidator,
        chat_model: BaseChatModel,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        pause_after_plan: bool = False,
        pause_on_failure: bool = False,
        tracer_provider: TracerProvider | None = None,
        capture_content: bool = True,
        render_preview: bool = False,
        secrets: Sequence[str] = (),
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        thread_id: str | None = None,
        examples: Sequence[ExampleScript] | None = None,
        prompts: PromptSet | None = None,
    ) -> None:
        """``examples``: the library few-shot examples are retrieved from (None: the family templates);
        ``prompts``: role instructions replacing the defaults."""
        self.request = request
        self.thread_id = thread_id or uuid.uuid4().hex
        self.graph = build_graph(checkpointer=checkpointer)
        self.config: RunnableConfig = {"configurable": {"thread_id": self.thread_id}}
        tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME)
        self.context = AgentContext(
            chat_model=chat_model,
            validator=validator,
            provider=_provider_name(request.provider),
            model_name=request.model or _model_of(chat_model),
            tracer=tracer,
            capture_content=capture_content,
            render_preview=render_preview,
            secrets=tuple(secrets),
            examples=tuple(family_examples() if examples is None else examples),
            prompts=prompts,
        )
        self._initial = initial_state(
            request, max_attempts=max_attempts, pause_after_plan=pause_after_plan, pause_on_failure=pause_on_failure
        )
        self._root: trace.Span | None = None
        self.outcome: AgentOutcome | None = None

    def start(self) -> Pause | AgentOutcome:
        """Run from the start until the first pause or the verdict."""
        if self._root is not None:
            raise ConfigError(f"session {self.thread_id} already started; call resume() to continue it")
        self._root = self.context.tracer.start_span(
            f"{OPERATION_INVOKE_AGENT} {AGENT_NAME}",
            context=otel_context.get_current(),  # nests under a caller's span (e.g. a Prefect task)
            attributes={
                GEN_AI_OPERATION_NAME: OPERATION_INVOKE_AGENT,
                GEN_AI_AGENT_NAME: AGENT_NAME,
                GEN_AI_PROVIDER_NAME: self.context.provider,
                GEN_AI_REQUEST_MODEL: self.context.model_name,
                GEN_AI_CONVERSATION_ID: self.thread_id,
                "scenario.tier": self.request.tier.value,
                "scenario.seed": self.request.seed,
                "scenario.prompt": redact(self.request.prompt or "", self.context.secrets),
                "scenario.max_attempts": self._initial["max_attempts"],
            },
        )
        self.context.root_context = trace.set_span_in_context(self._root)
        return self._advance(self._initial)

    def resume(self, edit: HumanEdit | None = None) -> Pause | AgentOutcome:
        """Continue a paused run with ``edit`` (None keeps the plan / lets the coder repair on its own)."""
        if self._root is None or self.outcome is not None:
            raise ConfigError(f"session {self.thread_id} is not paused; start() it first (it may have finished)")
        return self._advance(Command(resume=(edit or HumanEdit()).model_dump(mode="json")))

    def _advance(self, graph_input: Any) -> Pause | AgentOutcome:
        assert self._root is not None
        try:
            result = self.graph.invoke(graph_input, self.config, context=self.context)
        except BaseException as err:
            end_open_attempts(self.context, err)
            self._root.record_exception(err)
            self._root.set_status(Status(StatusCode.ERROR, type(err).__name__))
            self._root.end()
            raise
        interrupts = result.get("__interrupt__") if isinstance(result, dict) else None
        if interrupts:
            payload = dict(interrupts[0].value)
            return Pause(kind=PauseKind(payload["kind"]), payload=payload, thread_id=self.thread_id)
        self.outcome = self._finish(self.graph.get_state(self.config).values)
        return self.outcome

    def _finish(self, state: dict[str, Any]) -> AgentOutcome:
        assert self._root is not None
        end_open_attempts(self.context)
        calls: list[ModelCall] = list(state.get("calls", []))
        usage = TokenUsage.from_calls(calls)
        source: str = state.get("source", "")
        verdict: StopReason = state.get("stop_reason") or StopReason.ATTEMPTS_EXHAUSTED
        attempts: list[AttemptRecord] = list(state.get("attempts", []))
        root = self._root
        root.set_attributes(
            {
                "scenario.verdict": verdict.value,
                "scenario.attempts": len(attempts),
                GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
                GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
            }
        )
        if usage.cost_usd is not None:
            root.set_attribute("scenario.cost_usd", usage.cost_usd)
        if verdict is not StopReason.ACCEPTED:
            root.set_status(Status(StatusCode.ERROR, verdict.value))
        trace_id = format(root.get_span_context().trace_id, "032x")
        root.end()
        return AgentOutcome(
            verdict=verdict,
            message=state.get("stop_message", ""),
            source=source,
            report=state.get("report"),
            seed_validation=self.context.seed_validations.get(script_sha256(source)) if state.get("report") else None,
            attempts=attempts,
            plan=state.get("plan"),
            usage=usage,
            calls=calls,
            trace_id=trace_id,
        )


class AgentOptions(TypedDict, total=False):
    """What `run_agent` passes on to `AgentSession`; the validator and the chat model are required."""

    validator: Required[ScriptValidator]
    chat_model: Required[BaseChatModel]
    max_attempts: int
    tracer_provider: TracerProvider | None
    capture_content: bool
    render_preview: bool
    secrets: Sequence[str]
    examples: Sequence[ExampleScript] | None
    prompts: PromptSet | None


def run_agent(request: GenerationRequest, **options: Unpack[AgentOptions]) -> AgentOutcome:
    """Generate one scenario script: plan, then code/review/verify until accepted or ``max_attempts`` are spent.

    ``options`` are `AgentSession`'s, without pauses. ``secrets`` (e.g. the API key) are scrubbed from
    captured prompts and completions; exceptions from the validator or the model (sandbox down, network
    lost) propagate, they are not failed attempts.
    """
    session = AgentSession(request, **options)
    outcome = session.start()
    assert isinstance(outcome, AgentOutcome)  # no pauses were asked for
    return outcome
