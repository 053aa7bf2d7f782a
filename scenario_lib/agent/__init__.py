"""The Scenario Architect: a LangGraph agent that plans, writes, reviews and validates scenario scripts."""

from scenario_lib.agent.graph import AgentOutcome, AgentSession, Pause, TokenUsage, build_graph, run_agent
from scenario_lib.agent.nodes import AWAIT_PLAN_EDIT, AWAIT_REPAIR, CODER, PLANNER, REVIEWER, VERIFIER
from scenario_lib.agent.state import (
    AgentContext,
    AgentRole,
    AgentState,
    AttemptRecord,
    Feedback,
    FeedbackOrigin,
    GenerationRequest,
    HumanEdit,
    ModelCall,
    ReviewVerdict,
    ScenarioPlan,
    ScriptValidator,
    StopReason,
    initial_state,
)

__all__ = [
    "AWAIT_PLAN_EDIT",
    "AWAIT_REPAIR",
    "CODER",
    "PLANNER",
    "REVIEWER",
    "VERIFIER",
    "AgentContext",
    "AgentOutcome",
    "AgentRole",
    "AgentSession",
    "AgentState",
    "AttemptRecord",
    "Feedback",
    "FeedbackOrigin",
    "GenerationRequest",
    "HumanEdit",
    "ModelCall",
    "Pause",
    "ReviewVerdict",
    "ScenarioPlan",
    "ScriptValidator",
    "StopReason",
    "TokenUsage",
    "build_graph",
    "initial_state",
    "run_agent",
]
