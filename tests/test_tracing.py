"""Tracing: the OTLP-JSON-lines file exporter, the OTLP/HTTP exporter, secret scrubbing and span nesting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from scenario_lib.config import TraceExporter, TracingSettings
from scenario_lib.errors import ConfigError
from scenario_lib.tracing import (
    GEN_AI_INPUT_MESSAGES,
    REDACTED,
    configure_tracing,
    messages_attribute,
    read_spans,
    redact,
    resolve_trace_file,
)
from tests.otlp_receiver import serve_otlp_receiver

FAKE_KEY = "sk-test-SECRET123"


def test_file_exporter_writes_otlp_json_lines_that_read_back(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = configure_tracing(TracingSettings(exporter=TraceExporter.FILE, file_path=str(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent", attributes={"n": 3, "x": 1.5, "ok": True, "tags": ["a", "b"]}):
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()

    lines = path.read_text().splitlines()
    assert len(lines) == 2  # one export per ended span
    first = json.loads(lines[0])
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16  # hex, not base64
    assert int(span["startTimeUnixNano"]) > 0
    child, parent = read_spans([path])
    assert (parent.name, child.name) == ("parent", "child")
    assert child.parent_span_id == parent.span_id and child.trace_id == parent.trace_id
    assert parent.attributes == {"n": 3, "x": 1.5, "ok": True, "tags": ["a", "b"]}
    assert parent.resource["service.name"] == "scenario_lib"


def test_secrets_are_scrubbed_from_every_exported_attribute(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = configure_tracing(
        TracingSettings(exporter=TraceExporter.FILE, file_path=str(path)), secrets=["my-custom-token-42"]
    )
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("call") as span:
        span.set_attribute("prompt", f"use key {FAKE_KEY} please")
        span.set_attribute("headers", json.dumps({"Authorization": "Bearer abcdefgh12345", "x-api-key": "zzzzzzzz"}))
        span.set_attribute("custom", "token my-custom-token-42 here")
        span.add_event("request", {"url": f"https://x/?key=AIzaSyA1234567890123456789012345"})
    provider.shutdown()

    text = path.read_text()
    for secret in (FAKE_KEY, "SECRET123", "abcdefgh12345", "zzzzzzzz", "my-custom-token-42", "AIzaSyA123"):
        assert secret not in text
    assert text.count(REDACTED) >= 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-test-SECRET123 end", f"key {REDACTED} end"),
        ("Authorization: Bearer tok.en-123456", f"Authorization: Bearer {REDACTED}"),
        ('{"x-api-key": "abcd1234"}', f'{{"x-api-key": "{REDACTED}"}}'),
        ("nothing secret here", "nothing secret here"),
    ],
    ids=["openai-key", "bearer-header", "api-key-json", "plain"],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_messages_attribute_follows_genai_semconv() -> None:
    value = json.loads(messages_attribute([("system", "be brief"), ("user", "hi")]))
    assert value == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
    ]


def test_otlp_http_exporter_delivers_spans_to_a_collector() -> None:
    with serve_otlp_receiver() as (endpoint, received):
        provider = configure_tracing(TracingSettings(exporter=TraceExporter.OTLP_HTTP, otlp_endpoint=endpoint))
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("chat m", attributes={GEN_AI_INPUT_MESSAGES: f"key {FAKE_KEY}"}):
                pass
        provider.shutdown()
        names = {span.name: span for span in received.spans}
    assert set(names) == {"root", "chat m"}
    assert names["chat m"].parent_span_id == names["root"].span_id
    assert FAKE_KEY not in str(names["chat m"].attributes)


def test_spans_nest_under_a_current_span_of_another_provider(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    outer = TracerProvider()  # stands in for Prefect's flow/task spans
    provider = configure_tracing(TracingSettings(exporter=TraceExporter.FILE, file_path=str(path)))
    with outer.get_tracer("prefect").start_as_current_span("task run") as task_span:
        with provider.get_tracer("agent").start_as_current_span("invoke_agent scenario_architect"):
            pass
    provider.shutdown()
    (span,) = read_spans([path])
    context = task_span.get_span_context()
    assert span.trace_id == format(context.trace_id, "032x")
    assert span.parent_span_id == format(context.span_id, "016x")


def test_none_exporter_and_bad_endpoint() -> None:
    provider = configure_tracing(TracingSettings(exporter=TraceExporter.NONE))
    with provider.get_tracer("t").start_as_current_span("x") as span:
        assert span.get_span_context().is_valid
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        configure_tracing(TracingSettings(exporter=TraceExporter.OTLP_HTTP, otlp_endpoint="127.0.0.1:4318"))


@pytest.mark.parametrize(
    ("store_root", "expected"),
    [
        (None, "traces/spans.jsonl"),
        ("/data/store", "/data/store/traces/spans.jsonl"),
        ("file://./datasets", "datasets/traces/spans.jsonl"),
        ("file:///abs/store", "/abs/store/traces/spans.jsonl"),
        ("s3://bucket/prefix", "traces/spans.jsonl"),
    ],
    ids=["none", "folder", "file-relative", "file-absolute", "s3"],
)
def test_resolve_trace_file(store_root: str | None, expected: str) -> None:
    assert resolve_trace_file("traces/spans.jsonl", store_root) == Path(expected)


def test_unused_global_provider_is_untouched() -> None:
    # configure_tracing returns its provider without installing it globally.
    before = trace.get_tracer_provider()
    configure_tracing(TracingSettings(exporter=TraceExporter.NONE))
    assert trace.get_tracer_provider() is before
