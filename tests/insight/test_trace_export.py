"""Trace export: canonical Parquet rows per model call, derived SFT/preference/OpenAI views, incrementality.

Spans are written the way the agent writes them (same names and attributes) by a real tracer and the
real file exporter; `tests/test_agent.py` exports the traces of real agent runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.trace import Tracer

from scenario_lib.config import TraceExporter, TracingSettings
from scenario_lib.errors import ConfigError
from scenario_lib.insight.trace_export import CALLS_DIR, ExportFormat, export_traces, read_calls
from scenario_lib.tracing import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    configure_tracing,
    messages_attribute,
)


def _chat(tracer: Tracer, role: str, attempt: int, prompt: str, answer: str) -> None:
    with tracer.start_as_current_span(
        "chat m",
        attributes={
            GEN_AI_OPERATION_NAME: "chat",
            GEN_AI_PROVIDER_NAME: "openai",
            GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
            GEN_AI_USAGE_INPUT_TOKENS: 100,
            GEN_AI_USAGE_OUTPUT_TOKENS: 20,
            GEN_AI_INPUT_MESSAGES: messages_attribute([("system", f"you are the {role}"), ("user", prompt)]),
            GEN_AI_OUTPUT_MESSAGES: messages_attribute([("assistant", answer)]),
            "scenario.agent.role": role,
            "scenario.attempt": attempt,
        },
    ):
        pass


def _attempt(tracer: Tracer, attempt: int, code: str, reward: float, stage: str, *, reviewed: bool = True) -> None:
    with tracer.start_as_current_span(f"attempt {attempt}", attributes={"scenario.attempt": attempt}) as span:
        _chat(tracer, "coder", attempt, f"write it (attempt {attempt})", code)
        _chat(tracer, "reviewer", attempt, code, '{"approve": %s}' % ("true" if reviewed else "false"))
        if reviewed:
            with tracer.start_as_current_span(
                "execute_tool validate_script",
                attributes={
                    GEN_AI_OPERATION_NAME: "execute_tool",
                    "scenario.attempt": attempt,
                    "scenario.reward": reward,
                    "scenario.stage_reached": stage,
                    "scenario.passed": reward == 1.0,
                },
            ):
                pass
        span.set_attributes({"scenario.reward": reward, "scenario.stage_reached": stage, "scenario.passed": reward == 1.0})


def _write_generation(path: Path, *, accepted: bool) -> None:
    provider = configure_tracing(TracingSettings(exporter=TraceExporter.FILE, file_path=str(path)))
    tracer = provider.get_tracer("scenario_lib.agent")
    with tracer.start_as_current_span("invoke_agent scenario_architect", attributes={GEN_AI_OPERATION_NAME: "invoke_agent", "scenario.tier": "tier1", "scenario.seed": 7}) as root:
        _chat(tracer, "planner", 0, "plan a lever", '{"family": "lever"}')
        _attempt(tracer, 1, "def build(): broken", 0.4, "stability")
        _attempt(tracer, 2, "no build at all", 0.0, "review", reviewed=False)
        if accepted:
            _attempt(tracer, 3, "def build(): fixed", 1.0, "task")
        root.set_attribute("scenario.verdict", "accepted" if accepted else "attempts_exhausted")
    provider.shutdown()


def test_export_rows_rewards_and_views(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    _write_generation(spans, accepted=True)
    _write_generation(spans, accepted=False)
    out = tmp_path / "dataset"

    summary = export_traces([spans], out)

    rows = read_calls(out)
    assert summary.rows_added == len(rows) == (1 + 2 * 3) + (1 + 2 * 2)
    accepted_trace = next(row["trace_id"] for row in rows if row["generation_verdict"] == "accepted")
    mine = sorted((row for row in rows if row["trace_id"] == accepted_trace), key=lambda row: row["step"])
    assert [(row["role"], row["attempt"], row["reward"], row["stage_reached"]) for row in mine] == [
        ("planner", 0, 1.0, "task"),
        ("coder", 1, 0.4, "stability"),
        ("reviewer", 1, 0.4, "stability"),
        ("coder", 2, 0.0, "review"),
        ("reviewer", 2, 0.0, "review"),
        ("coder", 3, 1.0, "task"),
        ("reviewer", 3, 1.0, "task"),
    ]
    assert mine[0]["tier"] == "tier1" and mine[0]["seed"] == 7 and mine[0]["model"] == "gpt-4o-mini"
    assert json.loads(mine[1]["prompt_messages"])[1]["parts"][0]["content"] == "write it (attempt 1)"
    assert mine[1]["completion"] == "def build(): broken" and mine[1]["input_tokens"] == 100

    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert [(p["rejected"][0]["content"], p["chosen"][0]["content"]) for p in pairs] == [
        ("def build(): broken", "def build(): fixed"),
        ("no build at all", "def build(): fixed"),
    ]
    assert pairs[0]["prompt"][-1] == {"role": "user", "content": "write it (attempt 1)"}
    sft = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert summary.sft_rows == len(sft) == 3  # planner, coder and reviewer of the accepted trace
    openai_rows = [json.loads(line) for line in (out / "openai_finetune.jsonl").read_text().splitlines()]
    assert all([m["role"] for m in row["messages"]] == ["system", "user", "assistant"] for row in openai_rows)


def test_export_is_incremental_and_loads_with_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prove the dataset loads without the Hub, and keep its cache out of the home folder.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spans = tmp_path / "spans.jsonl"
    out = tmp_path / "dataset"
    _write_generation(spans, accepted=True)
    first = export_traces([spans], out)
    again = export_traces([spans, tmp_path], out)  # the same file twice (once via its folder)
    assert (again.rows_added, again.duplicates_skipped, again.rows_total) == (0, 2 * first.rows_added, first.rows_added)
    _write_generation(spans, accepted=False)
    third = export_traces([spans], out, formats=[ExportFormat.PARQUET])
    assert third.rows_added == 5 and third.rows_total == first.rows_added + 5
    assert len(list((out / CALLS_DIR).glob("*.parquet"))) == 2

    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "parquet", data_files=str(out / CALLS_DIR / "*.parquet"), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded.num_rows == third.rows_total
    assert len(set(loaded["span_id"])) == loaded.num_rows
    assert {"prompt_messages", "completion", "reward", "role"} <= set(loaded.column_names)


def test_missing_span_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        export_traces([tmp_path / "nope.jsonl"], tmp_path / "out")
