"""Providers: the chat model per setting, the start-up probe, the price table and the offline model."""

from __future__ import annotations

import socket

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import SecretStr

from scenario_lib.config import LlmProvider, LlmSettings
from scenario_lib.errors import ConfigError
from scenario_lib.agent.providers import (
    OFFLINE_MODEL,
    OfflineChatModel,
    check_provider,
    estimate_cost_usd,
    make_chat_model,
)
from tests.openai_stub_server import serve_openai_stub

FAKE_KEY = "sk-test-SECRET123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_openai_compatible_endpoint_answers_with_usage() -> None:
    with serve_openai_stub(["hello from the stub"], api_key=FAKE_KEY) as (base_url, state):
        settings = LlmSettings(provider=LlmProvider.OPENAI, base_url=base_url, api_key=SecretStr(FAKE_KEY), model="gpt-4o-mini")
        check_provider(settings)
        model = make_chat_model(settings)
        answer = model.invoke([SystemMessage("be brief"), HumanMessage("hi")])
    assert answer.text == "hello from the stub"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    assert state.requests[0]["model"] == "gpt-4o-mini"
    assert [m["role"] for m in state.requests[0]["messages"]] == ["system", "user"]


def test_unreachable_endpoint_is_a_config_error_without_the_key() -> None:
    settings = LlmSettings(
        provider=LlmProvider.OPENAI, base_url=f"http://127.0.0.1:{_free_port()}/v1", api_key=SecretStr(FAKE_KEY)
    )
    with pytest.raises(ConfigError, match="cannot reach") as caught:
        check_provider(settings, timeout_s=2)
    assert FAKE_KEY not in str(caught.value)


def test_rejected_key_is_a_config_error() -> None:
    with serve_openai_stub(["x"], api_key="sk-the-right-one") as (base_url, _):
        settings = LlmSettings(provider=LlmProvider.OPENAI, base_url=base_url, api_key=SecretStr(FAKE_KEY))
        with pytest.raises(ConfigError, match="rejected the API key"):
            check_provider(settings)


@pytest.mark.parametrize("provider", [LlmProvider.OPENAI, LlmProvider.ANTHROPIC, LlmProvider.GEMINI])
def test_hosted_provider_without_key_is_a_config_error(provider: LlmProvider) -> None:
    with pytest.raises(ConfigError, match="needs an API key"):
        make_chat_model(LlmSettings(provider=provider))
    with pytest.raises(ConfigError, match="needs an API key"):
        check_provider(LlmSettings(provider=provider))


@pytest.mark.parametrize(
    ("provider", "class_name"),
    [(LlmProvider.ANTHROPIC, "ChatAnthropic"), (LlmProvider.GEMINI, "ChatGoogleGenerativeAI"), (LlmProvider.OFFLINE, "OfflineChatModel")],
    ids=["anthropic", "gemini", "offline"],
)
def test_make_chat_model_builds_each_provider_without_network(provider: LlmProvider, class_name: str) -> None:
    model = make_chat_model(LlmSettings(provider=provider, api_key=SecretStr(FAKE_KEY)))
    assert type(model).__name__ == class_name


@pytest.mark.parametrize(
    ("model", "tokens", "expected"),
    [
        ("gpt-4o-mini", (1_000_000, 1_000_000), 0.75),
        ("gpt-4o-2024-08-06", (1_000_000, 0), 2.5),
        ("openai/gpt-4o-mini", (2_000_000, 0), 0.3),
        (OFFLINE_MODEL, (5000, 5000), 0.0),
        ("some-local-llama", (100, 100), None),
    ],
    ids=["mini", "dated-snapshot-longest-prefix", "router-prefix", "offline", "unknown"],
)
def test_estimate_cost(model: str, tokens: tuple[int, int], expected: float | None) -> None:
    cost = estimate_cost_usd(model, *tokens)
    assert cost == (pytest.approx(expected) if expected is not None else None)


def test_offline_model_refuses_free_form_prompts() -> None:
    with pytest.raises(ConfigError, match="offline model only answers"):
        OfflineChatModel().invoke([HumanMessage("write me a poem")])


def test_offline_model_answers_the_three_roles() -> None:
    from scenario_lib.agent.prompts import extract_python, parse_plan, parse_review, request_block
    from scenario_lib.agent.state import GenerationRequest
    from scenario_lib.tiers import TIER_PRESETS

    tier = next(iter(TIER_PRESETS))
    request = GenerationRequest(tier=tier, seed=3)
    model = OfflineChatModel()
    plan = parse_plan(model.invoke([HumanMessage(request_block("planner", request))]).text)
    assert plan.family in TIER_PRESETS[tier].families
    first = extract_python(model.invoke([HumanMessage(request_block("coder", request, attempt=1))]).text)
    second = extract_python(model.invoke([HumanMessage(request_block("coder", request, attempt=2))]).text)
    assert "def build(" in first and first != second  # a repair attempt draws another design
    review = model.invoke([HumanMessage("```python\n" + first + "```\n" + request_block("reviewer", request, attempt=1))])
    assert parse_review(review.text).approve
    rejected = model.invoke([HumanMessage("```python\nx = 1\n```\n" + request_block("reviewer", request, attempt=1))])
    assert not parse_review(rejected.text).approve
    assert review.usage_metadata is not None and review.usage_metadata["input_tokens"] > 0
