"""Turn agent span files into RL/SFT datasets: one canonical Parquet row per model call, plus derived views.

Canonical rows (``calls/part-*.parquet``) hold, per ``chat`` span: ids, the call's step in its trace,
role, model, provider, prompt messages (JSON), completion, token counts, and the verifier's outcome of
that call's attempt as ``reward`` (1.0 accepted, else the mean fraction of stages passed per seed; 0.0
for an attempt the reviewer rejected or that held no code). Planner calls (attempt 0) get the reward of
the generation's last attempt. Exports are incremental: rows are keyed on ``span_id`` and a span already
exported is skipped, so new parts hold only new rows.

Derived views are rewritten from all canonical rows on every export:

- ``sft.jsonl``: ``{"prompt": [messages], "completion": [assistant message]}`` for calls with reward 1.0;
- ``preferences.jsonl``: ``{"prompt", "chosen", "rejected"}`` pairing each failed coder attempt with the
  accepted code of the same trace (prompt = the failed attempt's prompt);
- ``openai_finetune.jsonl``: ``{"messages": [...]}`` for the same calls as ``sft.jsonl``.

The Parquet parts load with ``datasets.load_dataset("parquet", data_files=".../calls/*.parquet")``.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from scenario_lib.errors import ConfigError
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import TRACES_PREFIX
from scenario_lib.tracing import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    OPERATION_CHAT,
    OPERATION_EXECUTE_TOOL,
    OPERATION_INVOKE_AGENT,
    SpanRecord,
    read_spans,
)

CALLS_DIR = "calls"
SFT_FILE = "sft.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
OPENAI_FILE = "openai_finetune.jsonl"
ATTR_ROLE = "scenario.agent.role"
ATTR_ATTEMPT = "scenario.attempt"


class ExportFormat(str, Enum):
    """A dataset view; the canonical Parquet rows are always written."""

    PARQUET = "parquet"
    SFT = "sft"
    PREFERENCE = "preference"
    OPENAI = "openai"


ALL_FORMATS: tuple[ExportFormat, ...] = tuple(ExportFormat)


@dataclass(frozen=True)
class ExportSummary:
    """What one export wrote."""

    rows_added: int
    rows_total: int
    duplicates_skipped: int
    sft_rows: int
    preference_pairs: int
    files: dict[str, Path] = field(default_factory=dict)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("trace_id", pa.string()),
            ("span_id", pa.string()),
            ("parent_span_id", pa.string()),
            ("step", pa.int32()),
            ("attempt", pa.int32()),
            ("role", pa.string()),
            ("model", pa.string()),
            ("provider", pa.string()),
            ("prompt_messages", pa.string()),
            ("completion", pa.string()),
            ("reward", pa.float64()),
            ("stage_reached", pa.string()),
            ("passed", pa.bool_()),
            ("generation_verdict", pa.string()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("cost_usd", pa.float64()),
            ("tier", pa.string()),
            ("seed", pa.int64()),
            ("start_time_unix_nano", pa.int64()),
        ]
    )


def _completion_text(output_messages: str) -> str:
    try:
        messages = json.loads(output_messages)
    except (TypeError, json.JSONDecodeError):
        return ""
    return "".join(
        str(part.get("content", "")) for message in messages for part in message.get("parts", []) if part.get("type") == "text"
    )


def _simple_messages(input_messages: str) -> list[dict[str, str]]:
    """GenAI-semconv messages as the {"role", "content"} list fine-tuning formats use."""
    try:
        messages = json.loads(input_messages)
    except (TypeError, json.JSONDecodeError):
        return []
    return [
        {
            "role": str(message.get("role", "user")),
            "content": "".join(str(part.get("content", "")) for part in message.get("parts", []) if part.get("type") == "text"),
        }
        for message in messages
    ]


def rows_from_spans(spans: Iterable[SpanRecord]) -> list[dict[str, Any]]:
    """One canonical row per ``chat`` span, rewarded with its attempt's verifier outcome."""
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    rows: list[dict[str, Any]] = []
    for trace_id, trace_spans in by_trace.items():
        root = next((s for s in trace_spans if s.attributes.get(GEN_AI_OPERATION_NAME) == OPERATION_INVOKE_AGENT), None)
        outcomes: dict[int, tuple[float, str, bool]] = {}
        # The attempt span carries the attempt's final outcome (review rejections included); the verify
        # span is a fallback for traces cut short before the attempt span ended.
        for span in sorted(trace_spans, key=lambda s: s.attributes.get(GEN_AI_OPERATION_NAME) is None):
            attempt = span.attributes.get(ATTR_ATTEMPT)
            is_verify = span.attributes.get(GEN_AI_OPERATION_NAME) == OPERATION_EXECUTE_TOOL
            is_attempt = GEN_AI_OPERATION_NAME not in span.attributes and "scenario.reward" in span.attributes
            if attempt is not None and (is_verify or is_attempt):
                outcomes[int(attempt)] = (
                    float(span.attributes.get("scenario.reward", 0.0)),
                    str(span.attributes.get("scenario.stage_reached", "")),
                    bool(span.attributes.get("scenario.passed", False)),
                )
        final = outcomes[max(outcomes)] if outcomes else (0.0, "", False)
        chats = sorted(
            (s for s in trace_spans if s.attributes.get(GEN_AI_OPERATION_NAME) == OPERATION_CHAT), key=lambda s: s.start_ns
        )
        for step, span in enumerate(chats):
            attrs = span.attributes
            attempt = int(attrs.get(ATTR_ATTEMPT, 0))
            reward, stage_reached, passed = final if attempt == 0 else outcomes.get(attempt, (0.0, "", False))
            rows.append(
                {
                    "trace_id": trace_id,
                    "span_id": span.span_id,
                    "parent_span_id": span.parent_span_id or "",
                    "step": step,
                    "attempt": attempt,
                    "role": str(attrs.get(ATTR_ROLE, "")),
                    "model": str(attrs.get(GEN_AI_REQUEST_MODEL, "")),
                    "provider": str(attrs.get(GEN_AI_PROVIDER_NAME, "")),
                    "prompt_messages": str(attrs.get(GEN_AI_INPUT_MESSAGES, "")),
                    "completion": _completion_text(str(attrs.get(GEN_AI_OUTPUT_MESSAGES, ""))),
                    "reward": reward,
                    "stage_reached": stage_reached,
                    "passed": passed,
                    "generation_verdict": str(root.attributes.get("scenario.verdict", "")) if root else "",
                    "input_tokens": int(attrs.get(GEN_AI_USAGE_INPUT_TOKENS, 0)),
                    "output_tokens": int(attrs.get(GEN_AI_USAGE_OUTPUT_TOKENS, 0)),
                    "cost_usd": attrs.get("scenario.cost_usd"),
                    "tier": str(root.attributes.get("scenario.tier", "")) if root else "",
                    "seed": int(root.attributes.get("scenario.seed", 0)) if root else 0,
                    "start_time_unix_nano": span.start_ns,
                }
            )
    return rows


def _span_files(sources: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.jsonl")))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"span file {path} does not exist; pass OTLP-JSON-lines files or folders holding them")
    return files


def read_calls(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every canonical row already exported under ``out_dir``."""
    import pyarrow.parquet as pq

    folder = Path(out_dir) / CALLS_DIR
    rows: list[dict[str, Any]] = []
    for part in sorted(folder.glob("*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    temporary = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    temporary.replace(path)  # readers never see a half-written view
    return count


def _sft_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["reward"] >= 1.0 and row["prompt_messages"] and row["completion"]]


def preference_pairs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each failed coder attempt paired with the accepted code of its trace (chosen) as DPO records."""
    pairs: list[dict[str, Any]] = []
    coder_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["role"] == "coder" and row["prompt_messages"] and row["completion"]:
            coder_rows[row["trace_id"]].append(row)
    for trace_id, calls in sorted(coder_rows.items()):
        calls.sort(key=lambda row: row["attempt"])
        accepted = next((row for row in calls if row["passed"]), None)
        if accepted is None:
            continue
        for failed in calls:
            if failed["attempt"] < accepted["attempt"] and failed["reward"] < accepted["reward"]:
                pairs.append(
                    {
                        "prompt": _simple_messages(failed["prompt_messages"]),
                        "chosen": [{"role": "assistant", "content": accepted["completion"]}],
                        "rejected": [{"role": "assistant", "content": failed["completion"]}],
                        "trace_id": trace_id,
                        "rejected_stage": failed["stage_reached"],
                        "rejected_reward": failed["reward"],
                    }
                )
    return pairs


def export_traces(
    span_files: Sequence[str | Path],
    out_dir: str | Path,
    formats: Sequence[ExportFormat] = ALL_FORMATS,
) -> ExportSummary:
    """Export the model calls in ``span_files`` (files or folders of ``*.jsonl``) to datasets under ``out_dir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    calls_dir = out / CALLS_DIR
    calls_dir.mkdir(parents=True, exist_ok=True)
    existing = read_calls(out)
    known = {row["span_id"] for row in existing}
    candidates = rows_from_spans(read_spans(_span_files(span_files)))
    new_rows: list[dict[str, Any]] = []
    for row in candidates:
        # A span can sit in two files (a copied span file): dedupe within the batch too.
        if row["span_id"] not in known:
            known.add(row["span_id"])
            new_rows.append(row)
    files: dict[str, Path] = {}
    if new_rows:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        part = calls_dir / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        temporary = part.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(new_rows, schema=_schema()), temporary)
        temporary.replace(part)
        files[ExportFormat.PARQUET.value] = part
    all_rows = existing + new_rows
    sft = _sft_rows(all_rows)
    pairs = preference_pairs(all_rows)
    if ExportFormat.SFT in formats:
        files[ExportFormat.SFT.value] = out / SFT_FILE
        _write_jsonl(
            out / SFT_FILE,
            (
                {
                    "prompt": _simple_messages(row["prompt_messages"]),
                    "completion": [{"role": "assistant", "content": row["completion"]}],
                    "role": row["role"],
                    "trace_id": row["trace_id"],
                    "span_id": row["span_id"],
                }
                for row in sft
            ),
        )
    if ExportFormat.PREFERENCE in formats:
        files[ExportFormat.PREFERENCE.value] = out / PREFERENCES_FILE
        _write_jsonl(out / PREFERENCES_FILE, pairs)
    if ExportFormat.OPENAI in formats:
        files[ExportFormat.OPENAI.value] = out / OPENAI_FILE
        _write_jsonl(
            out / OPENAI_FILE,
            (
                {"messages": [*_simple_messages(row["prompt_messages"]), {"role": "assistant", "content": row["completion"]}]}
                for row in sft
            ),
        )
    return ExportSummary(
        rows_added=len(new_rows),
        rows_total=len(all_rows),
        duplicates_skipped=len(candidates) - len(new_rows),
        sft_rows=len(sft),
        preference_pairs=len(pairs),
        files=files,
    )


def export_store_traces(
    store: DatasetStore, out_dir: str | Path, formats: Sequence[ExportFormat] = ALL_FORMATS
) -> ExportSummary:
    """Export every span file under the store's ``traces/`` (local folder or S3) to datasets under ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="scenario-spans-") as folder:
        if not store.get_prefix(TRACES_PREFIX, Path(folder)):
            raise ConfigError(
                f"no traces in {store.url_for(TRACES_PREFIX)}: generate scenarios first "
                "(with tracing.exporter = 'file', the default)"
            )
        return export_traces([folder], out_dir, formats)
