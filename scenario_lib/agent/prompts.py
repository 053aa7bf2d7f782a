"""The planner, coder and reviewer prompts, and the parsers for what the model answers.

Each prompt is a system message that never changes between calls (the role's instructions, then the
contract reference generated from `scenario_lib.contract`, the units, the import convention, the
validator's rules and the tool versions; see `scenario_lib.agent.reference`) and a user message with
what varies: retrieved example scripts, the request, the plan, the feedback. Every prompt ends with a ```json request block (role, tier, prompt, seed, attempt): hosted models read
it as the task statement and the offline model answers from it. Models answer in fenced blocks
(```json for plans and reviews, ```python for code), which every provider can produce without
tool-calling support.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from scenario_lib.agent.examples import ExampleScript, family_catalogue, render_examples, select_examples
from scenario_lib.agent.reference import reference_sections
from scenario_lib.agent.state import AgentRole, Feedback, GenerationRequest, ReviewVerdict, ScenarioPlan
from scenario_lib.errors import ConfigError
from scenario_lib.agent.providers import fenced_blocks

PLANNER_INSTRUCTIONS = """\
You are the planner of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
A scenario script is one Python file defining `build(seed: int, scale: tuple[float, float, float]) -> Scenario`
with the contract below; the validator runs it in a sandbox for several seeds and scales.

Design one scenario for the request. Answer with only a ```json block holding an object with keys:
family (snake_case; reuse a listed family when the request is one of them), summary, geometric_requirements
(list of strings: every body, its shape, size in mm, support, motion and collision primitives),
parameter_ranges (list of {name, low, high, unit} at scale 1), scale_limits ({low: [x, y, z], high: [x, y, z]}),
learning_objectives (list of strings: what an agent solving it must learn), verification_strategy (how the
script keeps itself valid across seeds and scales: clearances, supports, rest poses, the goal not met at t=0),
demonstration_strategy (how a bounded hand reaches success: which body it grasps, the path it takes, the
orientation that fits, or the joint it drives and how far)."""

CODER_INSTRUCTIONS = """\
You are the coder of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
Write the complete script for the plan against the contract below; the examples in the request are complete
scripts the validator accepted: follow their structure, imports and calling style. Answer with exactly one
```python block holding the whole file. When feedback on an earlier attempt is given, fix everything it
names (stage, seed, scale, message, metrics) and keep what worked."""

REVIEWER_INSTRUCTIONS = """\
You are the code reviewer of a team that writes parametric physics benchmark scenarios (build123d + MuJoCo).
Review the script against the plan, the contract and the validator's rules below before it is run. Reject only
for concrete defects: missing build(), forbidden imports, wrong signature, field names the contract does not
have, positional arguments to contract models, a success condition that holds at t=0, parts that overlap or
float. Answer with only a ```json block: {"approve": true|false, "issues": ["..."]}."""

PROMPT_FILES = {"planner": "planner.md", "coder": "coder.md", "reviewer": "reviewer.md"}


@dataclass(frozen=True)
class PromptSet:
    """The role instructions each prompt starts with; the generated contract reference follows them."""

    planner: str = PLANNER_INSTRUCTIONS
    coder: str = CODER_INSTRUCTIONS
    reviewer: str = REVIEWER_INSTRUCTIONS

    @classmethod
    def from_folder(cls, folder: str | Path) -> PromptSet:
        """Instructions from ``planner.md``, ``coder.md`` and ``reviewer.md`` in ``folder`` (each optional)."""
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"the prompt folder {str(path)!r} does not exist; create it with any of "
                f"{', '.join(PROMPT_FILES.values())}, or unset SCENARIOS_LLM__PROMPT_DIR"
            )
        found = {role: path / name for role, name in PROMPT_FILES.items() if (path / name).is_file()}
        if not found:
            raise ConfigError(
                f"the prompt folder {str(path)!r} holds none of {', '.join(PROMPT_FILES.values())}; "
                "each one replaces that role's instructions (`scenarios agent prompt` shows the defaults)"
            )
        return cls(**{role: file.read_text(encoding="utf-8").strip() for role, file in found.items()})

    def system_message(self, role: AgentRole) -> SystemMessage:
        """The static part of a role's prompt, first so that providers' prompt caching applies."""
        instructions = {AgentRole.PLANNER: self.planner, AgentRole.CODER: self.coder, AgentRole.REVIEWER: self.reviewer}[role]
        return SystemMessage(instructions + "\n\n" + reference_sections())


DEFAULT_PROMPTS = PromptSet()


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


def planner_messages(
    request: GenerationRequest,
    prompt: str,
    *,
    library: Sequence[ExampleScript] = (),
    prompts: PromptSet = DEFAULT_PROMPTS,
) -> list[BaseMessage]:
    """The planner's prompt for ``request`` (``prompt`` is the request's or the tier's default)."""
    parts = []
    if library:
        parts.append("Families of accepted scenarios so far (reuse one when it fits the request):\n" + family_catalogue(library))
    parts.append(f"Plan a {request.tier.value} scenario: {prompt}")
    parts.append(request_block("planner", request, prompt=prompt))
    return [prompts.system_message(AgentRole.PLANNER), HumanMessage("\n\n".join(parts))]


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
    *,
    library: Sequence[ExampleScript] = (),
    prompts: PromptSet = DEFAULT_PROMPTS,
) -> list[BaseMessage]:
    """The coder's prompt: examples, the plan, and on a repair the previous code and the feedback on it."""
    parts = []
    examples = select_examples(library, f"{prompt} {plan.family} {plan.summary}", tier=request.tier.value)
    if examples:
        parts.append(render_examples(examples))
    parts += [f"Request: {prompt}", "Plan:\n```json\n" + plan.model_dump_json(indent=2) + "\n```"]
    if previous_source and feedback:
        parts.append("Your previous script:\n```python\n" + previous_source.rstrip() + "\n```")
    if feedback:
        # The latest failure matters most; older ones stop the coder from cycling between two bugs.
        history = "\n".join(format_feedback(item) for item in feedback[-3:])
        parts.append("Feedback on earlier attempts (latest last):\n" + history)
    parts.append(request_block("coder", request, attempt=attempt, prompt=prompt))
    return [prompts.system_message(AgentRole.CODER), HumanMessage("\n\n".join(parts))]


def reviewer_messages(
    request: GenerationRequest, plan: ScenarioPlan, source: str, attempt: int, *, prompts: PromptSet = DEFAULT_PROMPTS
) -> list[BaseMessage]:
    """The reviewer's prompt: the plan and the candidate script."""
    body = (
        "Plan:\n```json\n" + plan.model_dump_json(indent=2) + "\n```\n\n"
        "Script:\n```python\n" + source.rstrip() + "\n```\n\n" + request_block("reviewer", request, attempt=attempt)
    )
    return [prompts.system_message(AgentRole.REVIEWER), HumanMessage(body)]


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
