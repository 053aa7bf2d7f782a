"""`scenarios agent ...`: what the Scenario Architect sends a model, so a user can see and tune it."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from scenario_lib.cli.app import StoreOption, app, load_cli_settings, open_cli_store, run_guarded
from scenario_lib.cli.output import write_json, write_stdout

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

agent_app = typer.Typer(help="See what the Scenario Architect's model is sent.", no_args_is_help=True)
app.add_typer(agent_app, name="agent")


class PromptRole(str, Enum):
    PLANNER = "planner"
    CODER = "coder"
    REVIEWER = "reviewer"


def render_role_messages(
    role: PromptRole, tier_text: str, prompt: str | None, seed: int, settings_store: str | None
) -> list[BaseMessage]:
    """The messages ``role`` would receive for the request; the coder and reviewer see the plan (and
    the reviewer the script) that the offline author writes for it, standing in for a model's."""
    from scenario_lib.agent.examples import family_examples, stored_examples
    from scenario_lib.agent.prompts import (
        DEFAULT_PROMPTS,
        PromptSet,
        coder_messages,
        extract_python,
        parse_plan,
        planner_messages,
        reviewer_messages,
    )
    from scenario_lib.agent.state import GenerationRequest
    from scenario_lib.agent.providers import OfflineChatModel
    from scenario_lib.tiers import TIER_PRESETS, resolve_tier

    settings = load_cli_settings(store_url=settings_store)
    tier = run_guarded(lambda: resolve_tier(tier_text))
    store = open_cli_store(settings)
    library = [*family_examples(), *run_guarded(lambda: stored_examples(store))]
    prompt_dir = settings.llm.prompt_dir
    prompts = run_guarded(lambda: PromptSet.from_folder(prompt_dir)) if prompt_dir else DEFAULT_PROMPTS
    request = GenerationRequest(tier=tier, prompt=prompt, seed=seed)
    text = prompt or TIER_PRESETS[tier].default_prompt
    messages = planner_messages(request, text, library=library, prompts=prompts)
    if role is PromptRole.PLANNER:
        return messages
    offline = OfflineChatModel()
    plan = parse_plan(offline.invoke(messages).text)
    messages = coder_messages(request, text, plan, 1, "", [], library=library, prompts=prompts)
    if role is PromptRole.CODER:
        return messages
    source = extract_python(offline.invoke(messages).text)
    return reviewer_messages(request, plan, source, 1, prompts=prompts)


@agent_app.command("prompt")
def prompt_command(
    role: Annotated[PromptRole, typer.Option("--role", help="Which model call to show.")] = PromptRole.CODER,
    tier: Annotated[str, typer.Option("--tier", help="tier1, tier2 or test_dummy (or 1, 2).")] = "tier1",
    prompt: Annotated[str | None, typer.Option("--prompt", help="The request; default: the tier's prompt.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The request's seed.")] = 0,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
) -> None:
    """Print the exact messages a model receives for a role, with token counts (≈ 4 characters per token).

    The first message never changes between calls (instructions, the contract reference generated from
    the code, the validator's rules), so providers' prompt caching applies to it. Set
    SCENARIOS_LLM__PROMPT_DIR to a folder with planner.md / coder.md / reviewer.md to replace a role's
    instructions.
    """
    from scenario_lib.agent.examples import estimate_tokens

    messages = render_role_messages(role, tier, prompt, seed, store)
    rows = [{"role": message.type, "tokens": estimate_tokens(str(message.content)), "content": str(message.content)} for message in messages]
    total = sum(row["tokens"] for row in rows)  # type: ignore[misc]
    if as_json:
        write_json({"agent_role": role.value, "messages": rows, "total_tokens": total, "tokens_per": "4 characters"})
        return
    names = {"system": "system", "human": "user", "ai": "assistant"}
    for row in rows:
        write_stdout(f"===== {names.get(str(row['role']), row['role'])} message · {role.value} · ≈ {row['tokens']:,} tokens =====")
        write_stdout(str(row["content"]))
    write_stdout(f"===== total ≈ {total:,} tokens (4 characters per token; each provider's tokenizer differs) =====")
