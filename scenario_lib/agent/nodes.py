"""The graph's nodes: plan, code, review, verify, and the two pauses an interactive caller can edit at.

Each node returns a `Command` whose ``goto`` type lists every step it can take next. A failed attempt
(no code, reviewer rejection, validation failure) becomes a `Feedback` for the coder until
``max_attempts`` coder answers have been spent. Every model call is a GenAI ``chat`` span and every
validation an ``execute_tool`` span, nested in a span per attempt under the run's root span.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from scenario_lib.agent.prompts import (
    DEFAULT_PROMPTS,
    coder_messages,
    extract_python,
    parse_plan,
    parse_review,
    planner_messages,
    reviewer_messages,
)
from scenario_lib.agent.state import (
    AgentContext,
    AgentRole,
    AgentState,
    AttemptRecord,
    Feedback,
    FeedbackOrigin,
    HumanEdit,
    ModelCall,
    PauseKind,
    ReviewVerdict,
    StopReason,
)
from scenario_lib.errors import ScenarioError
from scenario_lib.agent.providers import estimate_cost_usd
from scenario_lib.report import STAGE_ORDER, Stage, ValidationReport
from scenario_lib.tracing import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    OPERATION_CHAT,
    OPERATION_EXECUTE_TOOL,
    messages_attribute,
    redact,
)

PLANNER: Final = "planner"
AWAIT_PLAN_EDIT: Final = "await_plan_edit"
CODER: Final = "coder"
REVIEWER: Final = "reviewer"
VERIFIER: Final = "verifier"
AWAIT_REPAIR: Final = "await_repair"
END: Final = "__end__"  # langgraph.graph.END, typed as a literal so `goto` type-checks

PLANNER_TRIES = 2  # a plan that does not parse is asked for once more, with the parse error
ATTR_ROLE = "scenario.agent.role"
ATTR_ATTEMPT = "scenario.attempt"
VALIDATE_TOOL = "validate_script"

_ROLE_NAMES = {"system": "system", "human": "user", "ai": "assistant"}


def script_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _prompt(state: AgentState) -> str:
    from scenario_lib.tiers import TIER_PRESETS

    request = state["request"]
    return request.prompt or TIER_PRESETS[request.tier].default_prompt


def _root_context(ctx: AgentContext) -> otel_context.Context:
    return ctx.root_context if ctx.root_context is not None else otel_context.get_current()


def _attempt_context(ctx: AgentContext, attempt: int) -> otel_context.Context:
    """The context of the attempt's span, starting that span on first use."""
    span = ctx.attempt_spans.get(attempt)
    if span is None:
        span = ctx.tracer.start_span(f"attempt {attempt}", context=_root_context(ctx), attributes={ATTR_ATTEMPT: attempt})
        ctx.attempt_spans[attempt] = span
    return trace.set_span_in_context(span, _root_context(ctx))


def _end_attempt(ctx: AgentContext, record: AttemptRecord) -> None:
    span = ctx.attempt_spans.pop(record.attempt, None)
    if span is None:
        return
    span.set_attributes(
        {
            "scenario.passed": record.passed,
            "scenario.stage_reached": record.stage_reached,
            "scenario.reward": record.reward,
            "scenario.script_sha256": record.script_sha256,
            "scenario.human_code": record.human_code,
        }
    )
    if not record.passed:
        span.set_status(Status(StatusCode.ERROR, f"failed at {record.stage_reached}"))
    span.end()


def end_open_attempts(ctx: AgentContext, error: BaseException | None = None) -> None:
    """End attempt spans left open by an exception or a stop, marking them with the error."""
    for attempt in sorted(ctx.attempt_spans):
        span = ctx.attempt_spans.pop(attempt)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def _chat(
    ctx: AgentContext,
    role: AgentRole,
    attempt: int,
    messages: Sequence[BaseMessage],
    parent: otel_context.Context,
) -> tuple[str, ModelCall]:
    """Call the chat model inside a GenAI ``chat`` span; return the answer text and its usage record."""
    attributes: dict[str, Any] = {
        GEN_AI_OPERATION_NAME: OPERATION_CHAT,
        GEN_AI_PROVIDER_NAME: ctx.provider,
        GEN_AI_REQUEST_MODEL: ctx.model_name,
        ATTR_ROLE: role.value,
        ATTR_ATTEMPT: attempt,
    }
    if ctx.capture_content:
        attributes[GEN_AI_INPUT_MESSAGES] = messages_attribute(
            ((_ROLE_NAMES.get(message.type, message.type), str(message.content)) for message in messages), ctx.secrets
        )
    with ctx.tracer.start_as_current_span(f"{OPERATION_CHAT} {ctx.model_name}", context=parent, attributes=attributes) as span:
        started = time.perf_counter()
        answer = ctx.chat_model.invoke(list(messages))
        duration_s = time.perf_counter() - started
        text = answer.text if isinstance(answer, AIMessage) else str(answer.content)
        usage = answer.usage_metadata if isinstance(answer, AIMessage) else None
        input_tokens = int(usage["input_tokens"]) if usage else 0
        output_tokens = int(usage["output_tokens"]) if usage else 0
        response_model = str(answer.response_metadata.get("model_name") or ctx.model_name)
        span.set_attribute(GEN_AI_RESPONSE_MODEL, response_model)
        span.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
        span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
        cost = estimate_cost_usd(ctx.model_name, input_tokens, output_tokens)
        if cost is not None:
            span.set_attribute("scenario.cost_usd", cost)
        if ctx.capture_content:
            span.set_attribute(GEN_AI_OUTPUT_MESSAGES, messages_attribute([("assistant", text)], ctx.secrets))
    call = ModelCall(
        role=role,
        attempt=attempt,
        provider=ctx.provider,
        model=ctx.model_name,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        duration_s=round(duration_s, 4),
    )
    return text, call


def _after_failure(
    state: AgentState, ctx: AgentContext, record: AttemptRecord, reason: StopReason
) -> tuple[Literal["coder", "await_repair", "__end__"], dict[str, Any]]:
    """Where a failed attempt goes (the coder, a human pause, or the end when attempts are spent) and the update."""
    _end_attempt(ctx, record)
    update: dict[str, Any] = {"attempts": [record], "feedback": [record.feedback] if record.feedback else []}
    if record.attempt >= state["max_attempts"]:
        message = record.feedback.message if record.feedback else "no feedback"
        update |= {
            "stop_reason": reason,
            "stop_message": f"{record.attempt} attempt(s) used; the last failed at {record.stage_reached}: {message}",
        }
        return END, update
    return (AWAIT_REPAIR if state["pause_on_failure"] else CODER), update


def plan_node(state: AgentState, runtime: Runtime[AgentContext]) -> Command[Literal["await_plan_edit", "coder"]]:
    """Ask the planner for a `ScenarioPlan` (once more with the parse error if it does not parse)."""
    ctx = runtime.context
    request = state["request"]
    prompts = ctx.prompts or DEFAULT_PROMPTS
    messages = planner_messages(request, _prompt(state), library=ctx.examples, prompts=prompts)
    calls: list[ModelCall] = []
    for _ in range(PLANNER_TRIES):
        text, call = _chat(ctx, AgentRole.PLANNER, 0, messages, _root_context(ctx))
        calls.append(call)
        try:
            plan = parse_plan(text)
            break
        except ValueError as err:
            messages = [*messages, AIMessage(text), *planner_messages(request, _prompt(state), library=ctx.examples, prompts=prompts)[1:]]
            last_error = err
    else:
        raise ScenarioError(
            f"the planner ({ctx.provider}/{ctx.model_name}) gave no valid ScenarioPlan in {PLANNER_TRIES} tries: "
            f"{last_error}; try a stronger model or a more specific prompt"
        )
    next_node: Literal["await_plan_edit", "coder"] = AWAIT_PLAN_EDIT if state["pause_after_plan"] else CODER
    return Command(goto=next_node, update={"plan": plan, "calls": calls})


def await_plan_edit_node(state: AgentState) -> Command[Literal["coder", "__end__"]]:
    """Pause with the plan; resume with a `HumanEdit` (``plan`` replaces it, ``stop`` ends the run)."""
    plan = state["plan"]
    assert plan is not None
    answer = interrupt({"kind": PauseKind.PLAN.value, "plan": plan.model_dump(mode="json")})
    edit = HumanEdit.model_validate(answer or {})
    if edit.stop:
        return Command(goto=END, update={"stop_reason": StopReason.STOPPED_BY_USER, "stop_message": "stopped after planning"})
    return Command(goto=CODER, update={"plan": edit.plan or plan})


def code_node(state: AgentState, runtime: Runtime[AgentContext]) -> Command[Literal["reviewer", "coder", "await_repair", "__end__"]]:
    """Ask the coder for the script (with the latest feedback on a repair)."""
    ctx = runtime.context
    attempt = state["attempt"] + 1
    plan = state["plan"]
    assert plan is not None
    messages = coder_messages(
        state["request"],
        _prompt(state),
        plan,
        attempt,
        state["source"],
        state["feedback"],
        library=ctx.examples,
        prompts=ctx.prompts or DEFAULT_PROMPTS,
    )
    text, call = _chat(ctx, AgentRole.CODER, attempt, messages, _attempt_context(ctx, attempt))
    source = extract_python(text)
    # "report" always describes "source": a new attempt clears the last one's.
    update: dict[str, Any] = {"attempt": attempt, "source": source, "human_code": False, "calls": [call], "report": None}
    if not source.strip():
        message = "the answer held no ```python block with the script; answer with the whole file in one block"
        record = _unvalidated_attempt(attempt, source, FeedbackOrigin.VERIFIER, Stage.CODE, message)
        next_node, failure_update = _after_failure(state, ctx, record, StopReason.ATTEMPTS_EXHAUSTED)
        return Command(goto=next_node, update={**update, **failure_update})
    return Command(goto=REVIEWER, update=update)


def review_node(state: AgentState, runtime: Runtime[AgentContext]) -> Command[Literal["verifier", "coder", "await_repair", "__end__"]]:
    """Ask the reviewer; an approval goes to validation, a rejection back to the coder as an attempt."""
    ctx = runtime.context
    attempt = state["attempt"]
    plan = state["plan"]
    assert plan is not None
    messages = reviewer_messages(state["request"], plan, state["source"], attempt, prompts=ctx.prompts or DEFAULT_PROMPTS)
    text, call = _chat(ctx, AgentRole.REVIEWER, attempt, messages, _attempt_context(ctx, attempt))
    try:
        verdict = parse_review(text)
    except ValueError as err:
        # The validator is the real judge: an unreadable review must not burn an attempt.
        verdict = ReviewVerdict(approve=True, issues=[f"reviewer answer unreadable ({err}); validated anyway"])
    if verdict.approve:
        return Command(goto=VERIFIER, update={"calls": [call]})
    message = "; ".join(verdict.issues) or "rejected without a reason"
    record = _unvalidated_attempt(attempt, state["source"], FeedbackOrigin.REVIEWER, Stage.REVIEW, message)
    next_node, failure_update = _after_failure(state, ctx, record, StopReason.REVIEWER_REJECTED)
    return Command(goto=next_node, update={"calls": [call], **failure_update})


def _unvalidated_attempt(attempt: int, source: str, origin: FeedbackOrigin, stage: Stage, message: str) -> AttemptRecord:
    """An attempt stopped before validation (no code in the answer, or the reviewer rejected it): no reward."""
    feedback = Feedback(origin=origin, attempt=attempt, stage=stage, message=message)
    return AttemptRecord(
        attempt=attempt,
        script_sha256=script_sha256(source),
        approved_by_reviewer=False,
        passed=False,
        stage_reached=stage,
        reward=0.0,
        feedback=feedback,
    )


def attempt_reward(report: ValidationReport) -> float:
    """1.0 when every seed passed, else the mean fraction of stages passed per seed."""
    if report.passed:
        return 1.0
    if not report.seeds:
        return 0.0
    fractions = [sum(result.passed for result in seed.stages) / len(STAGE_ORDER) for seed in report.seeds]
    return round(sum(fractions) / len(fractions), 4)


def _feedback_from(report: ValidationReport, attempt: int) -> Feedback:
    rates = {stage.value: round(report.pass_rate(stage), 4) for stage in STAGE_ORDER}
    found = report.first_failure
    if found is None:
        return Feedback(origin=FeedbackOrigin.VERIFIER, attempt=attempt, message="no seed was validated", stage_pass_rates=rates)
    seed_report, failure = found
    return Feedback(
        origin=FeedbackOrigin.VERIFIER,
        attempt=attempt,
        stage=failure.stage,
        seed=seed_report.seed,
        scale=seed_report.scale,
        message=failure.message,
        metrics=dict(failure.metrics),
        stage_pass_rates=rates,
    )


def verify_node(state: AgentState, runtime: Runtime[AgentContext]) -> Command[Literal["coder", "await_repair", "__end__"]]:
    """Validate the script over the harness inside an ``execute_tool`` span; accept or feed the failure back."""
    ctx = runtime.context
    attempt = state["attempt"]
    source = state["source"]
    sha = script_sha256(source)
    attributes: dict[str, Any] = {
        GEN_AI_OPERATION_NAME: OPERATION_EXECUTE_TOOL,
        GEN_AI_TOOL_NAME: VALIDATE_TOOL,
        ATTR_ATTEMPT: attempt,
        "scenario.script_sha256": sha,
        "scenario.human_code": state["human_code"],
    }
    with ctx.tracer.start_as_current_span(
        f"{OPERATION_EXECUTE_TOOL} {VALIDATE_TOOL}", context=_attempt_context(ctx, attempt), attributes=attributes
    ) as span:
        report, seed_validation = ctx.validator.validate_script(
            source, base_seed=state["request"].seed, render_preview=ctx.render_preview
        )
        ctx.seed_validations[sha] = seed_validation
        reward = attempt_reward(report)
        feedback = None if report.passed else _feedback_from(report, attempt)
        last = STAGE_ORDER[-1]
        stage_reached = last if report.passed or feedback is None or feedback.stage is None else feedback.stage
        span.set_attributes(
            {
                "scenario.passed": report.passed,
                "scenario.reward": reward,
                "scenario.stage_reached": stage_reached.value,
                "scenario.seeds": len(report.seeds),
                "scenario.validation_s": report.duration_s,
                **{f"scenario.stage.{stage.value}.pass_rate": report.pass_rate(stage) for stage in STAGE_ORDER},
            }
        )
        if feedback is not None:
            span.set_attributes(
                {
                    "scenario.failure.stage": feedback.stage.value if feedback.stage else "",
                    "scenario.failure.seed": feedback.seed if feedback.seed is not None else -1,
                    "scenario.failure.scale": list(feedback.scale or ()),
                    "scenario.failure.message": redact(feedback.message, ctx.secrets),
                    "scenario.failure.metrics": json.dumps(feedback.metrics),
                }
            )
            span.set_status(Status(StatusCode.ERROR, f"{feedback.stage} failed"))
    record = AttemptRecord(
        attempt=attempt,
        script_sha256=sha,
        approved_by_reviewer=not state["human_code"],
        passed=report.passed,
        stage_reached=stage_reached,
        reward=reward,
        feedback=feedback,
        human_code=state["human_code"],
    )
    if report.passed:
        _end_attempt(ctx, record)
        return Command(
            goto=END,
            update={
                "report": report,
                "attempts": [record],
                "stop_reason": StopReason.ACCEPTED,
                "stop_message": f"accepted at attempt {attempt}: {report.summary()}",
            },
        )
    next_node, failure_update = _after_failure(state, ctx, record, StopReason.ATTEMPTS_EXHAUSTED)
    return Command(goto=next_node, update={"report": report, **failure_update})


def await_repair_node(state: AgentState) -> Command[Literal["coder", "verifier", "__end__"]]:
    """Pause after a failed attempt; resume with a `HumanEdit`.

    ``source`` replaces the code and goes straight to validation as the next attempt; ``note`` joins the
    coder's feedback; ``stop`` ends the run; an empty edit lets the coder repair on its own.
    """
    last = state["attempts"][-1] if state["attempts"] else None
    answer = interrupt(
        {
            "kind": PauseKind.ATTEMPT_FAILED.value,
            "attempt": state["attempt"],
            "feedback": last.feedback.model_dump(mode="json") if last and last.feedback else None,
            "source": state["source"],
        }
    )
    edit = HumanEdit.model_validate(answer or {})
    if edit.stop:
        return Command(
            goto=END,
            update={"stop_reason": StopReason.STOPPED_BY_USER, "stop_message": f"stopped after attempt {state['attempt']}"},
        )
    if edit.source is not None:
        return Command(
            goto=VERIFIER, update={"source": edit.source, "attempt": state["attempt"] + 1, "human_code": True, "report": None}
        )
    if edit.note:
        note = Feedback(origin=FeedbackOrigin.HUMAN, attempt=state["attempt"], message=edit.note)
        return Command(goto=CODER, update={"feedback": [note]})
    return Command(goto=CODER)
