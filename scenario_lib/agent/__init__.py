"""The Scenario Architect: a LangGraph agent that plans, writes, reviews and validates scenario scripts.

The names below load lazily (PEP 562): importing `scenario_lib.agent.state` for its models, as run
records do, does not pull in LangGraph.
"""

from __future__ import annotations

from scenario_lib.exports import LazyExports

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

_LAZY = LazyExports(__name__, _EXPORTS, globals())
__all__ = _LAZY.all
__getattr__ = _LAZY.load
__dir__ = _LAZY.names
