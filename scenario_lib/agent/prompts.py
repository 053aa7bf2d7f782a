"""The planner, coder and reviewer prompts, and the parsers for what the model answers.

Every prompt ends with a ```json request block (role, tier, prompt, seed, attempt): hosted models read
it as the task statement and the offline model answers from it. Models answer in fenced blocks
(```json for plans and reviews, ```python for code), which every provider can produce without
tool-calling support.
"""

from __future__ import annotations

import json
import re

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from scenario_lib.agent.state import Feedback, GenerationRequest, ReviewVerdict, ScenarioPlan
from scenario_lib.providers import fenced_blocks

CONTRACT_SUMMARY = """\
A scenario script is one Python file defining `build(seed: int, scale: tuple[float, float, float]) -> Scenario`.
It draws every parameter from `random.Random(seed)`, multiplies sizes by `scale` (x, y, z) within its declared
`ScaleLimits`, models each body as one build123d part in millimetres in the body's own frame, and returns
`scenario_lib.contract.Scenario(family, objective, bodies, success, parameters, parameter_ranges, scale_limits)`.
Import only `random`, `math`, `build123d` and `scenario_lib.contract` (Body, Pose, FIXED, FREE, Hinge, Slide,
Box, Cylinder, Sphere, Collision, Zone, InsideZone, JointInRange, AllOf, ParameterRange, ScaleLimits, Scenario).
Rules the validator enforces: each part is a closed, valid, non-self-intersecting solid with volume; bodies do not
interpenetrate at t=0 and the scene rests stably (no explosion, no energy gain); the success condition must NOT
already hold at t=0; keep clearances absolute while sizes scale; a non-convex part must not use Collision.HULL."""

PLANNER_SYSTEM = f"""\
You are the planner of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
{CONTRACT_SUMMARY}

Design one scenario for the request. Answer with only a ```json block holding an object with keys:
family (snake_case), summary, geometric_requirements (list of strings), parameter_ranges (list of
{{name, low, high, unit}} at scale 1), scale_limits ({{low: [x, y, z], high: [x, y, z]}}), learning_objectives
(list of strings: what an agent solving it must learn), verification_strategy (how the script keeps itself
valid across seeds and scales)."""

CODER_SYSTEM = f"""\
You are the coder of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
{CONTRACT_SUMMARY}

Write the complete script for the plan. Answer with exactly one ```python block holding the whole file.
When feedback on an earlier attempt is given, fix what it names (stage, seed, scale, message, metrics)
and keep what worked."""

REVIEWER_SYSTEM = f"""\
You are the code reviewer of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
{CONTRACT_SUMMARY}

Review the script against the plan and the rules before it is run. Reject only for concrete defects (missing
build(), forbidden imports, wrong signature, a success condition that holds at t=0, parts that overlap).
Answer with only a ```json block: {{"approve": true|false, "issues": ["..."]}}."""


def request_block(role: str, request: GenerationRequest, *, attempt: int = 0, prompt: str | None = None) -> str:
    """The fenced JSON request every prompt ends with."""
    payload = {
        "role": role,
        "tier": request.tier.value,
        "prompt": prompt if prompt is not None else request.prompt,
        "seed": request.seed,
        "attempt": attempt,
    }
    return "```json\n" + json.dumps(payload) + "\n```"


def planner_messages(request: GenerationRequest, prompt: str) -> list[BaseMessage]:
    """The planner's prompt for ``request`` (``prompt`` is the request's or the tier's default)."""
    return [
        SystemMessage(PLANNER_SYSTEM),
        HumanMessage(f"Plan a {request.tier.value} scenario: {prompt}\n\n" + request_block("planner", request, prompt=prompt)),
    ]


def format_feedback(feedback: Feedback) -> str:
    """One feedback item as the coder reads it: a sentence and the structured fields as JSON."""
    where = f" at stage {feedback.stage}" if feedback.stage else ""
    if feedback.seed is not None:
        scale = ", ".join(f"{value:.3g}" for value in feedback.scale or ())
        where += f", seed {feedback.seed}, scale ({scale})"
    details = feedback.model_dump(mode="json", exclude={"message"}, exclude_defaults=True)
    return f"Attempt {feedback.attempt} failed ({feedback.origin.value}){where}: {feedback.message}\n" + json.dumps(details)


def coder_messages(
    request: GenerationRequest,
    prompt: str,
    plan: ScenarioPlan,
    attempt: int,
    previous_source: str,
    feedback: list[Feedback],
) -> list[BaseMessage]:
    """The coder's prompt: the plan, and on a repair the previous code and the feedback on it."""
    parts = [f"Request: {prompt}", "Plan:\n```json\n" + plan.model_dump_json(indent=2) + "\n```"]
    if previous_source and feedback:
        parts.append("Your previous script:\n```python\n" + previous_source.rstrip() + "\n```")
    if feedback:
        # The latest failure matters most; older ones stop the coder from cycling between two bugs.
        history = "\n".join(format_feedback(item) for item in feedback[-3:])
        parts.append("Feedback on earlier attempts (latest last):\n" + history)
    parts.append(request_block("coder", request, attempt=attempt, prompt=prompt))
    return [SystemMessage(CODER_SYSTEM), HumanMessage("\n\n".join(parts))]


def reviewer_messages(request: GenerationRequest, plan: ScenarioPlan, source: str, attempt: int) -> list[BaseMessage]:
    """The reviewer's prompt: the plan and the candidate script."""
    body = (
        "Plan:\n```json\n" + plan.model_dump_json(indent=2) + "\n```\n\n"
        "Script:\n```python\n" + source.rstrip() + "\n```\n\n" + request_block("reviewer", request, attempt=attempt)
    )
    return [SystemMessage(REVIEWER_SYSTEM), HumanMessage(body)]


def extract_python(text: str) -> str:
    """The script in a coder answer: the first ```python block, else the first fenced block, else the text."""
    blocks = fenced_blocks(text)
    for language, body in blocks:
        if language in ("python", "py"):
            return body.strip() + "\n"
    if blocks:
        return blocks[0][1].strip() + "\n"
    return text.strip() + "\n" if re.search(r"^def build\s*\(", text, re.MULTILINE) else ""


def _parse_json_model(text: str, model: type[BaseModel]) -> BaseModel:
    candidates = [body for language, body in fenced_blocks(text) if language in ("json", "")]
    candidates.append(text)
    # Models sometimes wrap the JSON in prose without a fence: try the outermost braces too.
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    errors: list[str] = []
    for candidate in candidates:
        try:
            return model.model_validate_json(candidate.strip())
        except ValidationError as err:
            errors.append(str(err).splitlines()[0])
    raise ValueError(f"no valid {model.__name__} JSON in the answer ({'; '.join(errors[:2])})")


def parse_plan(text: str) -> ScenarioPlan:
    """The `ScenarioPlan` in a planner answer; ValueError with the reason when there is none."""
    plan = _parse_json_model(text, ScenarioPlan)
    assert isinstance(plan, ScenarioPlan)
    return plan


def parse_review(text: str) -> ReviewVerdict:
    """The `ReviewVerdict` in a reviewer answer; ValueError with the reason when there is none."""
    verdict = _parse_json_model(text, ReviewVerdict)
    assert isinstance(verdict, ReviewVerdict)
    return verdict
