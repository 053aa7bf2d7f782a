"""The Scenario Architect: a LangGraph agent that plans, writes, reviews and validates scenario scripts.

The names below load lazily (PEP 562): importing `scenario_lib.agent.state` for its models, as run
records do, does not pull in LangGraph.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AWAIT_PLAN_EDIT": "nodes",
    "AWAIT_REPAIR": "nodes",
    "CODER": "nodes",
    "PLANNER": "nodes",
    "REVIEWER": "nodes",
    "VERIFIER": "nodes",
    "AgentContext": "state",
    "AgentOutcome": "graph",
    "AgentRole": "state",
    "AgentSession": "graph",
    "AgentState": "state",
    "AttemptRecord": "state",
    "Feedback": "state",
    "FeedbackOrigin": "state",
    "GenerationRequest": "state",
    "HumanEdit": "state",
    "ModelCall": "state",
    "Pause": "graph",
    "PauseKind": "state",
    "ReviewVerdict": "state",
    "ScenarioPlan": "state",
    "ScriptValidator": "state",
    "StopReason": "state",
    "TokenUsage": "graph",
    "build_graph": "graph",
    "initial_state": "state",
    "run_agent": "graph",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scenario_lib.agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"scenario_lib.agent.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
