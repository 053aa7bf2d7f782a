"""The Scenario Architect graph with the real validator: repairs through every stage, the cap, pauses,
the offline provider, the OpenAI-compatible HTTP path, traces and their export.

The only fake is at the LangChain seam: `ScriptedChatModel` answers each role from a list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from scenario_lib.agent import (
    AgentOutcome,
    AgentSession,
    GenerationRequest,
    HumanEdit,
    Pause,
    ScenarioPlan,
    StopReason,
    run_agent,
)
from scenario_lib.config import LlmProvider, LlmSettings, TraceExporter, TracingSettings
from scenario_lib.agent.providers import make_chat_model
from scenario_lib.tiers import Tier
from scenario_lib.insight.trace_export import export_traces, read_calls
from scenario_lib.tracing import SpanRecord, configure_tracing, read_spans
from tests.openai_stub_server import serve_openai_stub
from tests.scripted_model import APPROVE, ScriptedChatModel, fenced
from tests.support import SCRIPTS

FAKE_KEY = "sk-test-SECRET123"
PLAN = ScenarioPlan(
    family="push_box",
    summary="push a cube into a goal zone",
    geometric_requirements=["a closed cube resting on a fixed floor slab"],
    learning_objectives=["push an object to a target"],
    verification_strategy="goal zone away from the start pose",
)
GOOD = (SCRIPTS / "dummy_box.py").read_text()
NO_BUILD = GOOD.replace("def build(", "def make_scene(")
# An open shell (a cube missing its top face): no volume, not watertight.
OPEN_SHELL = GOOD.replace(
    "    cube = SolidBox(sx, sy, sz)\n",
    "    from build123d import Shell\n\n    cube = Shell(SolidBox(sx, sy, sz).faces()[:-1])\n",
)
INTERPENETRATING = (SCRIPTS / "broken_interpenetrating.py").read_text()
ALREADY_SOLVED = (SCRIPTS / "broken_already_solved.py").read_text()




@pytest.fixture
def tracing(tmp_path: Path) -> Iterator[tuple[TracerProvider, Path]]:
    path = tmp_path / "traces" / "spans.jsonl"
    provider = configure_tracing(TracingSettings(exporter=TraceExporter.FILE, file_path=str(path)), secrets=[FAKE_KEY])
    yield provider, path
    provider.shutdown()


def children(spans: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    return sorted((s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_ns)


def test_coder_repairs_a_failure_at_every_stage(validator: Any, tracing: tuple[TracerProvider, Path], tmp_path: Path) -> None:
    provider, span_file = tracing
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", PLAN.model_dump_json())],
            "coder": [fenced("python", s) for s in (NO_BUILD, OPEN_SHELL, INTERPENETRATING, ALREADY_SOLVED, GOOD)],
            "reviewer": [APPROVE],
        }
    )
    request = GenerationRequest(tier=Tier.TIER1, prompt="push a cube", seed=5, provider="openai", model="gpt-4o-mini")

    outcome = run_agent(request, validator=validator, chat_model=model, max_attempts=5, tracer_provider=provider)

    assert outcome.verdict is StopReason.ACCEPTED and outcome.accepted
    assert [a.stage_reached for a in outcome.attempts] == ["code", "geometry", "stability", "task", "solvability"]
    assert [a.passed for a in outcome.attempts] == [False, False, False, False, True]
    assert outcome.report is not None and outcome.report.passed and len(outcome.report.seeds) == 2
    assert outcome.seed_validation is not None and outcome.seed_validation.scene is not None
    assert outcome.source.strip() == GOOD.strip() and outcome.plan == PLAN
    # Each repair prompt carried the previous attempt's structured feedback: stage, seed and message.
    coder_prompts = [str(messages[-1].content) for messages in model.prompts["coder"]]
    for prompt, failed in zip(coder_prompts[1:], outcome.attempts[:-1]):
        assert failed.feedback is not None and failed.feedback.seed is not None
        assert f"at stage {failed.stage_reached}, seed {failed.feedback.seed}" in prompt
        assert failed.feedback.message[:60] in prompt
    assert '"stage_pass_rates"' in coder_prompts[1] and "Your previous script" in coder_prompts[1]
    # Usage: 1 plan + 5 x (code + review) calls at 1000 + 200 tokens, priced as gpt-4o-mini.
    assert outcome.usage.calls == 11 and outcome.usage.input_tokens == 11_000
    assert outcome.usage.cost_usd == pytest.approx(11 * (1000 * 0.15 + 200 * 0.6) / 1e6)

    spans = read_spans([span_file])
    (root,) = [s for s in spans if s.parent_span_id is None]
    assert root.name == "invoke_agent scenario_architect" and {s.trace_id for s in spans} == {root.trace_id}
    assert root.attributes["scenario.verdict"] == "accepted" and root.attributes["scenario.attempts"] == 5
    top = children(spans, root)
    assert [s.name for s in top] == ["chat gpt-4o-mini"] + [f"attempt {n}" for n in range(1, 6)]
    assert top[0].attributes["scenario.agent.role"] == "planner"
    for attempt_span in top[1:]:
        assert [s.name for s in children(spans, attempt_span)] == [
            "chat gpt-4o-mini", "chat gpt-4o-mini", "execute_tool validate_script"
        ]
    verify = children(spans, top[2])[-1]
    assert verify.attributes["gen_ai.operation.name"] == "execute_tool"
    assert verify.attributes["scenario.failure.stage"] == "geometry"
    assert verify.attributes["scenario.stage.code.pass_rate"] == 1.0
    assert verify.attributes["scenario.stage.geometry.pass_rate"] < 1.0
    chat = children(spans, top[1])[0]
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 1000
    assert json.loads(chat.attributes["gen_ai.output.messages"])[0]["role"] == "assistant"

    summary = export_traces([span_file], tmp_path / "dataset")
    rows = read_calls(tmp_path / "dataset")
    assert summary.rows_added == len(rows) == 11
    coder_rows = sorted((r for r in rows if r["role"] == "coder"), key=lambda r: r["attempt"])
    assert [r["stage_reached"] for r in coder_rows] == ["code", "geometry", "stability", "task", "solvability"]
    assert coder_rows[-1]["reward"] == 1.0 and all(r["reward"] < 1.0 for r in coder_rows[:-1])
    assert coder_rows[0]["reward"] < coder_rows[1]["reward"] < coder_rows[2]["reward"] < coder_rows[3]["reward"]
    assert summary.preference_pairs == 4


def test_reviewer_rejections_spend_the_attempts(validator: Any) -> None:
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", PLAN.model_dump_json())],
            "coder": [fenced("python", GOOD)],
            "reviewer": [fenced("json", '{"approve": false, "issues": ["the goal zone overlaps the floor"]}')],
        }
    )
    outcome = run_agent(GenerationRequest(tier=Tier.TIER1), validator=validator, chat_model=model, max_attempts=2)
    assert outcome.verdict is StopReason.REVIEWER_REJECTED and not outcome.accepted
    assert [a.stage_reached for a in outcome.attempts] == ["review", "review"]
    assert outcome.report is None and outcome.seed_validation is None
    assert "the goal zone overlaps the floor" in str(model.prompts["coder"][1][-1].content)
    assert "2 attempt(s) used" in outcome.message


def test_pause_to_edit_the_plan_and_to_replace_failed_code(validator: Any) -> None:
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", PLAN.model_dump_json())],
            "coder": [fenced("python", ALREADY_SOLVED)],
            "reviewer": [APPROVE],
        }
    )
    session = AgentSession(
        GenerationRequest(tier=Tier.TIER1),
        validator=validator,
        chat_model=model,
        pause_after_plan=True,
        pause_on_failure=True,
    )
    paused = session.start()
    assert isinstance(paused, Pause) and paused.kind == "plan"
    assert paused.payload["plan"]["family"] == "push_box"

    edited = PLAN.model_copy(update={"family": "slide_cube", "learning_objectives": ["slide, do not lift"]})
    paused = session.resume(HumanEdit(plan=edited))
    assert isinstance(paused, Pause) and paused.kind == "attempt_failed"
    assert '"family": "slide_cube"' in str(model.prompts["coder"][0][-1].content)
    assert paused.payload["feedback"]["stage"] == "task" and paused.payload["attempt"] == 1

    outcome = session.resume(HumanEdit(source=GOOD))
    assert isinstance(outcome, AgentOutcome) and outcome.accepted
    assert [(a.attempt, a.human_code, a.passed) for a in outcome.attempts] == [(1, False, False), (2, True, True)]
    assert outcome.plan is not None and outcome.plan.family == "slide_cube"
    assert len(model.prompts["coder"]) == 1  # the human's code went straight to validation
    # State survives in the checkpointer between the calls.
    assert session.graph.get_state(session.config).values["attempt"] == 2


def test_offline_provider_produces_a_validated_scenario(validator: Any, tracing: tuple[TracerProvider, Path]) -> None:
    provider, span_file = tracing
    request = GenerationRequest(tier=Tier.TIER1, seed=11)
    outcome = run_agent(request, validator=validator, chat_model=make_chat_model(LlmSettings()), tracer_provider=provider)
    print(f"offline: {outcome.verdict.value} after {len(outcome.attempts)} attempt(s): {outcome.message}")
    assert outcome.accepted, outcome.message
    assert outcome.usage.cost_usd == 0.0 and outcome.usage.input_tokens > 0
    assert isinstance(outcome.plan, ScenarioPlan) and outcome.plan.family
    spans = read_spans([span_file])
    assert {s.attributes.get("gen_ai.provider.name") for s in spans if "gen_ai.provider.name" in s.attributes} == {"offline"}


def test_openai_compatible_endpoint_end_to_end_without_secrets_in_spans(
    validator: Any, tracing: tuple[TracerProvider, Path]
) -> None:
    provider, span_file = tracing
    answers = [fenced("json", PLAN.model_dump_json()), fenced("python", GOOD), APPROVE]
    with serve_openai_stub(answers, api_key=FAKE_KEY) as (base_url, stub):
        settings = LlmSettings(provider=LlmProvider.OPENAI, base_url=base_url, api_key=SecretStr(FAKE_KEY), model="gpt-4o-mini")
        # A user pasting the key into the prompt must not leak it into the traces either.
        request = GenerationRequest(tier=Tier.TIER1, prompt=f"push a cube (my key is {FAKE_KEY})", provider="openai", model="gpt-4o-mini")
        outcome = run_agent(
            request,
            validator=validator,
            chat_model=make_chat_model(settings),
            tracer_provider=provider,
            secrets=[FAKE_KEY],
        )
    assert outcome.accepted and len(stub.requests) == 3
    assert outcome.usage.output_tokens > 0 and outcome.usage.cost_usd is not None
    text = span_file.read_text()
    assert "SECRET123" not in text and "[REDACTED]" in text
    assert "gen_ai.input.messages" in text


def test_validation_failures_exhaust_the_attempts(validator: Any) -> None:
    model = ScriptedChatModel(
        answers={"planner": [fenced("json", PLAN.model_dump_json())], "coder": [fenced("python", ALREADY_SOLVED)], "reviewer": [APPROVE]}
    )
    outcome = run_agent(GenerationRequest(tier=Tier.TIER1), validator=validator, chat_model=model, max_attempts=1)
    assert outcome.verdict is StopReason.ATTEMPTS_EXHAUSTED
    assert outcome.report is not None and not outcome.report.passed
    assert "1 attempt(s) used; the last failed at task" in outcome.message


def test_run_nests_under_the_callers_span_and_can_omit_content(
    validator: Any, tracing: tuple[TracerProvider, Path]
) -> None:
    provider, span_file = tracing
    model = ScriptedChatModel(
        answers={"planner": [fenced("json", PLAN.model_dump_json())], "coder": [fenced("python", GOOD)], "reviewer": [APPROVE]}
    )
    with TracerProvider().get_tracer("prefect").start_as_current_span("task run") as task_span:  # a Prefect task's span
        outcome = run_agent(
            GenerationRequest(tier=Tier.TIER1), validator=validator, chat_model=model, tracer_provider=provider, capture_content=False
        )
    assert outcome.accepted
    (root,) = [s for s in read_spans([span_file]) if s.name.startswith("invoke_agent")]
    assert root.parent_span_id == format(task_span.get_span_context().span_id, "016x")
    assert outcome.trace_id == root.trace_id
    text = span_file.read_text()
    assert "gen_ai.input.messages" not in text and "gen_ai.usage.input_tokens" in text
