"""Prompt evaluation: a fixed set of requests through the agent with the configured provider.

``.venv/bin/python bench/prompt_eval.py`` runs `REQUESTS` (both tiers, and requests outside the eight
families) through the Scenario Architect (plan → code → review → verify, up to the attempt cap) with the
provider the settings select (``SCENARIOS_LLM__PROVIDER=openai SCENARIOS_LLM__BASE_URL=... ``), and
reports per request and overall:

* the first attempt's pass rate per stage (a stage counts as passed when the first attempt got past it
  on every harness seed; a reviewer rejection passes none);
* attempts per accepted scenario, acceptance within the cap;
* tokens in and out, and the cost where the model's price is known.

With the offline provider it measures the offline author (every request is answered from a family
template); with a real endpoint it measures the prompts. ``tests/test_prompt_eval.py`` runs
`evaluate_prompts` with a scripted model, so the harness itself is exercised in CI. Results go to
``bench/results/prompt_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scenario_lib.report import STAGE_ORDER  # noqa: E402


@dataclass(frozen=True)
class EvalRequest:
    """One request of the evaluation set."""

    name: str
    tier: str
    prompt: str | None  # None: the tier's default prompt
    novel: bool = False  # outside the offline author's eight families


REQUESTS: tuple[EvalRequest, ...] = (
    EvalRequest("tier1-default", "tier1", None),
    EvalRequest("tier2-default", "tier2", None),
    EvalRequest("drawer", "tier2", "A drawer that slides out of a fixed cabinet on a rail; pull it at least two thirds open", True),
    EvalRequest("square-peg", "tier1", "Insert a square peg with 0.5 mm clearance into a square hole in a fixed block"),
    EvalRequest("tab-slot", "tier1", "Stand a flat tab upright in one of two slots of a fixed holder"),
    EvalRequest("stack-three", "tier1", "Stack three cubes of decreasing size on a goal spot"),
    EvalRequest("lever", "tier2", "Tip a lever resting on a fulcrum to its other stop"),
    EvalRequest("door", "tier2", "Open a door hinged on its left side past 60 degrees"),
    EvalRequest("ball-cup", "tier1", "Put a ball resting in a shallow dish into a cup standing on the table", True),
    EvalRequest("ring-post", "tier1", "Drop a ring lying on the table over a vertical post", True),
    EvalRequest("crank", "tier2", "Turn a crank handle on a fixed axle a quarter turn", True),
    EvalRequest("sliding-lid", "tier2", "Slide the lid of a fixed box along its grooves until the box is half open", True),
)


@dataclass(frozen=True)
class RequestResult:
    name: str
    tier: str
    novel: bool
    accepted: bool
    attempts: int
    first_stage_reached: str
    first_passed: bool
    stages_passed_first: list[str]
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    duration_s: float
    message: str


def stages_passed(stage_reached: str, passed: bool) -> list[str]:
    """The stages an attempt got past: all when it passed, those before the failing one otherwise."""
    names = [stage.value for stage in STAGE_ORDER]
    if passed:
        return names
    return names[: names.index(stage_reached)] if stage_reached in names else []


def evaluate_request(request: EvalRequest, *, chat_model: Any, validator: Any, max_attempts: int, provider: str, model: str | None) -> RequestResult:
    from scenario_lib.agent import GenerationRequest, run_agent
    from scenario_lib.tiers import resolve_tier

    started = time.perf_counter()
    outcome = run_agent(
        GenerationRequest(tier=resolve_tier(request.tier), prompt=request.prompt, provider=provider, model=model),
        validator=validator,
        chat_model=chat_model,
        max_attempts=max_attempts,
    )
    first = outcome.attempts[0] if outcome.attempts else None
    return RequestResult(
        name=request.name,
        tier=request.tier,
        novel=request.novel,
        accepted=outcome.accepted,
        attempts=len(outcome.attempts),
        first_stage_reached=first.stage_reached if first else "none",
        first_passed=bool(first and first.passed),
        stages_passed_first=stages_passed(first.stage_reached, first.passed) if first else [],
        input_tokens=outcome.usage.input_tokens,
        output_tokens=outcome.usage.output_tokens,
        cost_usd=outcome.usage.cost_usd,
        duration_s=round(time.perf_counter() - started, 2),
        message=outcome.message[:300],
    )


def summarize(results: Sequence[RequestResult]) -> dict[str, Any]:
    """Overall figures: first-attempt pass rate per stage, attempts per accepted scenario, tokens, cost."""
    count = len(results)
    accepted = [result for result in results if result.accepted]
    costs = [result.cost_usd for result in results if result.cost_usd is not None]
    return {
        "requests": count,
        "first_attempt_pass_rate": {
            stage.value: round(sum(stage.value in r.stages_passed_first for r in results) / count, 3) if count else 0.0
            for stage in STAGE_ORDER
        },
        "accepted": len(accepted),
        "accepted_rate": round(len(accepted) / count, 3) if count else 0.0,
        "attempts_per_accepted": round(sum(r.attempts for r in accepted) / len(accepted), 2) if accepted else None,
        "novel_accepted": f"{sum(r.accepted for r in results if r.novel)}/{sum(r.novel for r in results)}",
        "input_tokens": sum(r.input_tokens for r in results),
        "output_tokens": sum(r.output_tokens for r in results),
        "cost_usd": round(sum(costs), 4) if len(costs) == count and count else None,
    }


def evaluate_prompts(
    requests: Sequence[EvalRequest], *, chat_model: Any, validator: Any, max_attempts: int = 4, provider: str = "offline", model: str | None = None
) -> tuple[list[RequestResult], dict[str, Any]]:
    """Run every request through the agent; per-request results and the summary."""
    results = [
        evaluate_request(request, chat_model=chat_model, validator=validator, max_attempts=max_attempts, provider=provider, model=model)
        for request in requests
    ]
    return results, summarize(results)


def print_results(results: Sequence[RequestResult], summary: dict[str, Any]) -> None:
    print(f"{'request':<16} {'tier':<6} {'novel':<5} {'first attempt':<14} {'accepted':<8} {'attempts':>8} {'tokens in/out':>15}")
    for r in results:
        first = "pass" if r.first_passed else f"fail@{r.first_stage_reached}"
        print(f"{r.name:<16} {r.tier:<6} {str(r.novel):<5} {first:<14} {str(r.accepted):<8} {r.attempts:>8} {r.input_tokens:>7}/{r.output_tokens:<7}")
    rates = ", ".join(f"{stage} {rate:.0%}" for stage, rate in summary["first_attempt_pass_rate"].items())
    print(f"first attempt passes: {rates}")
    print(
        f"accepted within the cap: {summary['accepted']}/{summary['requests']} ({summary['accepted_rate']:.0%}); "
        f"attempts per accepted: {summary['attempts_per_accepted']}; novel accepted {summary['novel_accepted']}; "
        f"tokens {summary['input_tokens']} in / {summary['output_tokens']} out; cost {summary['cost_usd']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="request names to run (default: all)")
    parser.add_argument("--seeds", type=int, default=None, help="harness seeds per validation (default: the settings')")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "prompt_eval.json")
    args = parser.parse_args(argv)

    from scenario_lib.config import load_settings
    from scenario_lib.runs.generation import make_validator
    from scenario_lib.agent.providers import make_chat_model, model_name

    settings = load_settings()
    requests = [r for r in REQUESTS if not args.only or r.name in args.only]
    validator = make_validator(settings, seeds=args.seeds)
    try:
        results, summary = evaluate_prompts(
            requests,
            chat_model=make_chat_model(settings.llm),
            validator=validator,
            max_attempts=settings.llm.max_attempts,
            provider=settings.llm.provider.value,
            model=model_name(settings.llm),
        )
    finally:
        validator.pool.close()
    print_results(results, summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"provider": settings.llm.provider.value, "model": model_name(settings.llm), "summary": summary, "requests": [asdict(r) for r in results]}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
