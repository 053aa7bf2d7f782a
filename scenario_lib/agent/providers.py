"""Chat models for the agent: one LangChain `BaseChatModel` per provider, built from `LlmSettings`.

``offline`` (the default) needs no network or credentials: `OfflineChatModel` answers the agent's
planner, coder and reviewer prompts deterministically from the tier presets and the template author,
so the same graph code path (and the same traces) serve every provider. ``openai`` speaks to any
OpenAI-compatible endpoint; ``anthropic`` and ``gemini`` use their LangChain integrations.

`check_provider` probes a hosted provider once (key present, endpoint reachable, key accepted) so a
bad setting is a `ConfigError` before any work starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from scenario_lib.agent.state import AgentRole
from scenario_lib.config import LlmProvider, LlmSettings
from scenario_lib.errors import ConfigError

OFFLINE_MODEL = "offline-architect"
DEFAULT_MODELS: dict[LlmProvider, str] = {
    LlmProvider.OFFLINE: OFFLINE_MODEL,
    LlmProvider.OPENAI: "gpt-4o-mini",
    LlmProvider.ANTHROPIC: "claude-sonnet-4-5",
    LlmProvider.GEMINI: "gemini-2.5-flash",
}
DEFAULT_BASE_URLS: dict[LlmProvider, str] = {
    LlmProvider.OPENAI: "https://api.openai.com/v1",
    LlmProvider.ANTHROPIC: "https://api.anthropic.com",
    LlmProvider.GEMINI: "https://generativelanguage.googleapis.com",
}
# Provider names as the GenAI semantic conventions spell them (gen_ai.provider.name).
SEMCONV_PROVIDER_NAMES: dict[LlmProvider, str] = {
    LlmProvider.OFFLINE: "offline",
    LlmProvider.OPENAI: "openai",
    LlmProvider.ANTHROPIC: "anthropic",
    LlmProvider.GEMINI: "gcp.gemini",
}
PROBE_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 120.0

# USD per million (input, output) tokens, list prices as of 2025; matched by longest model-name prefix.
# Estimates only: cached-token discounts and batch prices are ignored. Unknown model -> cost None.
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    OFFLINE_MODEL: (0.0, 0.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
}


def estimate_cost_usd(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated cost of one call from the price table, or None when the model's price is unknown."""
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" as routers name it
    matches = [prefix for prefix in PRICES_USD_PER_MTOK if name.startswith(prefix)]
    if not matches:
        return None
    input_price, output_price = PRICES_USD_PER_MTOK[max(matches, key=len)]
    return round((input_tokens * input_price + output_tokens * output_price) / 1_000_000, 8)


def model_name(settings: LlmSettings) -> str:
    """The model the settings select (the provider's default when none is set)."""
    return settings.model or DEFAULT_MODELS[settings.provider]


def _require_key(settings: LlmSettings) -> str:
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise ConfigError(
            f"llm.provider={settings.provider.value} needs an API key and none is set; set SCENARIOS_LLM__API_KEY "
            "(or llm.api_key in scenarios.toml), or use llm.provider=offline"
        )
    return settings.api_key.get_secret_value()


def make_chat_model(settings: LlmSettings) -> BaseChatModel:
    """The chat model ``settings`` select; raises `ConfigError` when a hosted provider lacks its key."""
    if settings.provider is LlmProvider.OFFLINE:
        return OfflineChatModel()
    key = _require_key(settings)
    model = model_name(settings)
    # What every provider gets: the sampling temperature, a request timeout and two retries.
    common: dict[str, Any] = {"temperature": settings.temperature, "timeout": REQUEST_TIMEOUT_S, "max_retries": 2}
    if settings.provider is LlmProvider.OPENAI:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=model, api_key=key, base_url=settings.base_url, stream_usage=True, **common)  # type: ignore[arg-type]
    if settings.provider is LlmProvider.ANTHROPIC:
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model_name=model, api_key=key, base_url=settings.base_url, max_tokens=16_000, **common)  # type: ignore[arg-type,call-arg]
    if settings.provider is LlmProvider.GEMINI:
        from langchain_google_genai import ChatGoogleGenerativeAI

        return ChatGoogleGenerativeAI(model=model, google_api_key=key, **common)
    raise ConfigError(f"unknown llm.provider {settings.provider!r}; use one of {[p.value for p in LlmProvider]}")


def check_provider(settings: LlmSettings, *, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Probe the provider once: key present, endpoint reachable, key accepted; else raise `ConfigError`.

    The probe lists models (``GET {base_url}/models`` for OpenAI-compatible endpoints), which costs no
    tokens. The offline provider needs nothing. Error messages never include the key.
    """
    import httpx

    if settings.provider is LlmProvider.OFFLINE:
        return
    key = _require_key(settings)
    base = (settings.base_url or DEFAULT_BASE_URLS[settings.provider]).rstrip("/")
    headers: dict[str, str]
    if settings.provider is LlmProvider.OPENAI:
        url, headers = f"{base}/models", {"Authorization": f"Bearer {key}"}
    elif settings.provider is LlmProvider.ANTHROPIC:
        url, headers = f"{base}/v1/models", {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        url, headers = f"{base}/v1beta/models", {"x-goog-api-key": key}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as err:
        raise ConfigError(
            f"llm.provider={settings.provider.value}: cannot reach {url} ({type(err).__name__}: {err}); "
            "check llm.base_url and the network, or use llm.provider=offline"
        ) from None  # the chained httpx error carries the request, headers included
    if response.status_code in (401, 403):
        raise ConfigError(
            f"llm.provider={settings.provider.value}: {url} rejected the API key (HTTP {response.status_code}); "
            "check SCENARIOS_LLM__API_KEY"
        )
    if response.status_code >= 400:
        raise ConfigError(
            f"llm.provider={settings.provider.value}: {url} answered HTTP {response.status_code}; "
            "check llm.base_url (an OpenAI-compatible server serves /models under its /v1 root)"
        )


# --- the offline model ------------------------------------------------------------------------------

_FENCE = re.compile(r"```([A-Za-z0-9_-]*)[^\n]*\n(.*?)```", re.DOTALL)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block in ``text`` as (language, body)."""
    return [(match.group(1).lower(), match.group(2)) for match in _FENCE.finditer(text)]


def read_request_block(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The JSON request block (one with a ``role`` key) the agent's prompts carry, last message first."""
    for message in reversed(messages):
        for language, body in fenced_blocks(str(message.content)):
            if language == "json":
                try:
                    data = json.loads(body)
                except json.JSONDecodeError:
                    continue
                if isinstance(data, dict) and "role" in data:
                    return data
    raise ConfigError(
        "the offline model only answers scenario_lib agent prompts (a ```json block with a 'role' key); "
        "use a hosted provider for free-form chat"
    )


def _estimate_tokens(text: str) -> int:
    # ~4 characters per token for English and code; offline usage is only indicative.
    return max(1, len(text) // 4)


# What the solvability stage's hand does in each family (the offline planner's demonstration strategy).
_DEMONSTRATIONS = {
    "push_box": "grasp the block, lift it clear of the slab, carry it above the goal zone, lower it onto the slab and release",
    "peg_in_hole": "grasp the peg, lift it above the block, turn it upright over the target bore, lower it in and release",
    "slot_insertion": "grasp the tab, lift it, stand it on edge aligned with the target slot, lower it in and release",
    "stacking": "pick each block in order and place it on the goal spot, on the one placed before, releasing each",
    "lever": "hold the beam and drive its hinge to the middle of the target range near its other stop",
    "hinged_door": "hold the door and drive its hinge open to the middle of the target range",
    "slider": "hold the carriage and drive its slide along the rail to the middle of the target range",
    "seesaw": "hold the plank and drive its hinge to the middle of the target range, lifting the load",
}


def _offline_plan(request: dict[str, Any]) -> str:
    from scenario_lib.authoring.offline import author_script
    from scenario_lib.tiers import TIER_PRESETS, resolve_tier

    tier = resolve_tier(str(request["tier"]))
    preset = TIER_PRESETS[tier]
    prompt = request.get("prompt") or preset.default_prompt
    authored = author_script(tier, prompt, int(request.get("seed", 0)))
    choices = ", ".join(f"{name}={value}" for name, value in sorted(authored.design.items()))
    plan = {
        "family": authored.family,
        "summary": prompt,
        "geometric_requirements": [
            "every part is one closed, valid, non-self-intersecting solid in millimetres, modelled in its body frame",
            "bodies start separated by a small clearance (no interpenetration at t=0)",
            "clearances stay absolute while sizes follow the scale argument",
            *([f"design choices: {choices}"] if choices else []),
        ],
        # The template author draws its continuous parameters inside the script; the plan names its choices.
        "parameter_ranges": [],
        "scale_limits": {"low": [0.5, 0.5, 0.5], "high": [2.0, 2.0, 2.0]},
        "learning_objectives": [preset.default_prompt],
        "verification_strategy": (
            "build at several seeds and scales; the goal must not hold at t=0 and the scene must rest "
            "without penetration before any action"
        ),
        "demonstration_strategy": _DEMONSTRATIONS.get(authored.family, "drive the moving body to the goal"),
    }
    return "```json\n" + json.dumps(plan, indent=2) + "\n```"


def _offline_code(request: dict[str, Any]) -> str:
    from scenario_lib.authoring.offline import author_script
    from scenario_lib.tiers import TIER_PRESETS, resolve_tier

    tier = resolve_tier(str(request["tier"]))
    prompt = request.get("prompt") or TIER_PRESETS[tier].default_prompt
    # A repair attempt draws a different design, as a model re-sampling would.
    seed = int(request.get("seed", 0)) + max(0, int(request.get("attempt", 1)) - 1)
    return "```python\n" + author_script(tier, prompt, seed).source.rstrip() + "\n```"


def _offline_review(messages: Sequence[BaseMessage]) -> str:
    source = ""
    for message in reversed(messages):
        blocks = [body for language, body in fenced_blocks(str(message.content)) if language == "python"]
        if blocks:
            source = blocks[0]
            break
    if re.search(r"^def build\s*\(", source, re.MULTILINE):
        verdict = {"approve": True, "issues": []}
    else:
        verdict = {"approve": False, "issues": ["the script defines no top-level build(seed, scale) function"]}
    return "```json\n" + json.dumps(verdict) + "\n```"


class OfflineChatModel(BaseChatModel):
    """A deterministic stand-in for a hosted model that answers the agent's three prompts.

    planner: a `ScenarioPlan` from the tier preset; coder: the template author's script for
    ``seed + attempt - 1``; reviewer: approve when the code defines ``build``. Usage is estimated at
    four characters per token.
    """

    model_name: str = OFFLINE_MODEL

    @property
    def _llm_type(self) -> str:
        return "scenario-lib-offline"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = read_request_block(messages)
        try:
            role = AgentRole(request["role"])
        except ValueError:
            roles = ", ".join(role.value for role in AgentRole)
            raise ConfigError(f"the offline model has no answer for role {request['role']!r}; roles are {roles}") from None
        if role is AgentRole.PLANNER:
            text = _offline_plan(request)
        elif role is AgentRole.CODER:
            text = _offline_code(request)
        else:
            text = _offline_review(messages)
        prompt_tokens = sum(_estimate_tokens(str(message.content)) for message in messages)
        completion_tokens = _estimate_tokens(text)
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            response_metadata={"model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
