"""The Scenario Architect: a LangGraph agent that plans, writes, reviews and validates scenario scripts.

The names below load lazily (PEP 562): importing `scenario_lib.agent.state` for its models, as run
records do, does not pull in LangGraph.
"""

from __future__ import annotations

from scenario_lib.exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "AWAIT_PLAN_EDIT": "nodes",
    "AWAIT_REPAIR": "nodes",
    "CODER": "nodes",
    "PLANNER": "nodes",
    "REVIEWER": "nodes",
    "VERIFIER": "nodes",
    "AgentContext": "state",
    "AgentOptions": "graph",
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

__all__, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
