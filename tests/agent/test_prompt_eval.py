"""The prompt evaluation harness (bench/prompt_eval.py), exercised with a scripted model and the real validator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


from scenario_lib.agent import ScenarioPlan
from tests.scripted_model import APPROVE, ScriptedChatModel, fenced
from tests.support import REPO, SCRIPTS

GOOD = (SCRIPTS / "dummy_box.py").read_text()
WRONG_FIELD = GOOD.replace("pose=Pose(position_mm=(0, 0, -5))", "pose=Pose(position=(0, 0, -5))")
INTERPENETRATING = (SCRIPTS / "broken_interpenetrating.py").read_text()


def load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prompt_eval", REPO / "bench" / "prompt_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prompt_eval"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_set_covers_both_tiers_and_novel_requests() -> None:
    harness = load_harness()
    assert len(harness.REQUESTS) >= 10
    assert {r.tier for r in harness.REQUESTS} == {"tier1", "tier2"} and sum(r.novel for r in harness.REQUESTS) >= 3
    assert len({r.name for r in harness.REQUESTS}) == len(harness.REQUESTS)


def test_the_harness_reports_first_attempt_stages_attempts_and_tokens(validator: Any) -> None:
    harness = load_harness()
    plan = fenced("json", ScenarioPlan(family="push_box", summary="push").model_dump_json())
    # Request 1: a wrong field, then right. Request 2: interpenetrating bodies every time (fails stability).
    model = ScriptedChatModel(
        answers={
            "planner": [plan],
            "coder": [fenced("python", WRONG_FIELD), fenced("python", GOOD), fenced("python", INTERPENETRATING)],
            "reviewer": [APPROVE],
        }
    )
    requests = [harness.EvalRequest("one", "test_dummy", "push a cube"), harness.EvalRequest("two", "test_dummy", "push it", True)]

    results, summary = harness.evaluate_prompts(requests, chat_model=model, validator=validator, max_attempts=2)

    assert [(r.accepted, r.attempts, r.first_stage_reached) for r in results] == [(True, 2, "code"), (False, 2, "stability")]
    assert results[1].stages_passed_first == ["code", "geometry", "mjcf"]
    assert summary["first_attempt_pass_rate"] == {"code": 0.5, "geometry": 0.5, "mjcf": 0.5, "stability": 0.0, "task": 0.0, "solvability": 0.0}
    assert summary["accepted"] == 1 and summary["attempts_per_accepted"] == 2.0 and summary["novel_accepted"] == "0/1"
    # 2 plans + 4 × (code + review) calls at the scripted model's 1,000 tokens in.
    assert summary["input_tokens"] == 10_000 and summary["cost_usd"] is None
