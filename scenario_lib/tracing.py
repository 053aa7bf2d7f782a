"""OpenTelemetry set-up for agent runs: exporters, secret scrubbing and the OTLP-JSON-lines span file.

`configure_tracing` builds a `TracerProvider` from `TracingSettings`: spans go to an OTLP-JSON-lines
file (one ``ExportTraceServiceRequest`` per line, in the OTLP/JSON mapping: hex ids, integer enums,
64-bit integers as strings) or to an OTLP/HTTP collector. Every exporter is wrapped so that API keys and
auth headers are scrubbed from span attributes and events before they leave the process.

The official ``opentelemetry-exporter-otlp-json-file`` package pins an ``opentelemetry-exporter-otlp-common``
that conflicts with the OTLP/HTTP exporter we also need, so the file exporter here is our own, built on
the protobuf encoder the HTTP exporter uses.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

from scenario_lib.config import TraceExporter, TracingSettings
from scenario_lib.errors import ConfigError

SERVICE_NAME = "scenario_lib"

# GenAI semantic-convention attribute names (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
OPERATION_INVOKE_AGENT = "invoke_agent"
OPERATION_CHAT = "chat"
OPERATION_EXECUTE_TOOL = "execute_tool"

REDACTED = "[REDACTED]"
# Key shapes of the providers we support plus generic auth headers; the configured key is scrubbed
# verbatim as well, whatever its shape.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"sk-[A-Za-z0-9_\-]{6,}"),  # OpenAI / Anthropic (sk-ant-...) / many compatible servers
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),  # Google API keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{6,}"),
    re.compile(r"(?i)((?:x-api-key|x-goog-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)(?!(?i:bearer)\s)(?!\[REDACTED)[^\s\"',}]{4,}"),
)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Return ``text`` with the given secrets and anything shaped like an API key or auth header scrubbed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: (match.group(1) if match.groups() else "") + REDACTED, text)
    return text


def _redact_value(value: AttributeValue, secrets: Sequence[str]) -> AttributeValue:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return [redact(item, secrets) for item in value]  # type: ignore[arg-type]
    return value


def _redact_attributes(attributes: Any, secrets: Sequence[str]) -> dict[str, AttributeValue]:
    return {key: _redact_value(value, secrets) for key, value in (attributes or {}).items()}


class RedactingSpanExporter(SpanExporter):
    """Scrubs secrets from every span's attributes and events, then hands the spans to ``inner``."""

    def __init__(self, inner: SpanExporter, secrets: Sequence[str] = ()) -> None:
        self.inner = inner
        self.secrets = tuple(secret for secret in secrets if secret)

    def _scrub(self, span: ReadableSpan) -> ReadableSpan:
        events = [
            Event(event.name, _redact_attributes(event.attributes, self.secrets), event.timestamp)
            for event in span.events
        ]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_redact_attributes(span.attributes, self.secrets),
            events=events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self._scrub(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _hex_ids(node: Any) -> Any:
    """Rewrite protobuf-JSON base64 ids as the lowercase hex OTLP/JSON requires."""
    if isinstance(node, dict):
        return {
            key: (base64.b64decode(value).hex() if key in ("traceId", "spanId", "parentSpanId") and value else _hex_ids(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(item) for item in node]
    return node


class OtlpJsonLinesExporter(SpanExporter):
    """Appends each export batch to ``path`` as one OTLP/JSON ``ExportTraceServiceRequest`` line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot create the trace folder {self.path.parent}: {err}; set tracing.file_path to a writable path"
            ) from err

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        if not spans:
            return SpanExportResult.SUCCESS
        message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        line = json.dumps(_hex_ids(message), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            try:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def resolve_trace_file(file_path: str, store_root: str | None) -> Path:
    """Where the span file goes: a relative ``file_path`` lands under a local ``store_root``.

    A remote store root (``s3://...``) cannot take an appended file, so then the path stays relative to
    the working directory; `scenario_lib.insight.trace_export` turns span files into datasets for any store.
    """
    path = Path(file_path)
    if path.is_absolute() or store_root is None:
        return path
    parsed = urlparse(store_root)
    if parsed.scheme in ("", "file"):
        # file://./datasets parses as netloc "." + path "/datasets": keep the relative root.
        root = Path(parsed.netloc + parsed.path) if parsed.scheme == "file" else Path(store_root)
        return root / path
    return path


def configure_tracing(
    settings: TracingSettings,
    *,
    store_root: str | None = None,
    secrets: Sequence[str] = (),
    service_name: str = SERVICE_NAME,
    batch: bool = False,
) -> TracerProvider:
    """A `TracerProvider` exporting as ``settings`` say, with ``secrets`` scrubbed from every span.

    The provider is returned, not installed globally: pass it to `scenario_lib.agent.run_agent` (spans
    still nest under whatever span is current, e.g. a Prefect task's). ``batch`` exports in the
    background (for long runs); the default exports each span as it ends so a crash loses nothing.
    Call ``shutdown()`` on the provider when done.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter: SpanExporter
    if settings.exporter is TraceExporter.NONE:
        return provider
    if settings.exporter is TraceExporter.FILE:
        exporter = OtlpJsonLinesExporter(resolve_trace_file(settings.file_path, store_root))
    elif settings.exporter is TraceExporter.OTLP_HTTP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if urlparse(settings.otlp_endpoint).scheme not in ("http", "https"):
            raise ConfigError(
                f"tracing.otlp_endpoint {settings.otlp_endpoint!r} is not an http(s) URL; "
                "use e.g. http://127.0.0.1:4318/v1/traces"
            )
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=10)
    else:  # pragma: no cover - the enum is exhaustive
        raise ConfigError(f"unknown tracing exporter {settings.exporter!r}")
    wrapped = RedactingSpanExporter(exporter, secrets)
    provider.add_span_processor(BatchSpanProcessor(wrapped) if batch else SimpleSpanProcessor(wrapped))
    return provider


def messages_attribute(messages: Iterable[tuple[str, str]], secrets: Sequence[str] = ()) -> str:
    """GenAI-semconv message list as a JSON string: ``[{"role": ..., "parts": [{"type": "text", ...}]}]``."""
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": redact(text, secrets)}]} for role, text in messages],
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class SpanRecord:
    """One span read back from an OTLP-JSON-lines file, attributes decoded to Python values."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0
    resource: dict[str, Any] = field(default_factory=dict)


def _any_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _key_values(value["kvlistValue"].get("values", []))
    return None


def _key_values(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _any_value(item.get("value", {})) for item in items}


def read_spans(paths: Iterable[str | Path]) -> list[SpanRecord]:
    """Every span in the given OTLP-JSON-lines files, in file order."""
    records: list[SpanRecord] = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path}:{number} is not OTLP/JSON: {err}; was it written by this exporter?") from err
                for resource_spans in request.get("resourceSpans", []):
                    resource = _key_values(resource_spans.get("resource", {}).get("attributes", []))
                    for scope_spans in resource_spans.get("scopeSpans", []):
                        for span in scope_spans.get("spans", []):
                            records.append(
                                SpanRecord(
                                    trace_id=span["traceId"],
                                    span_id=span["spanId"],
                                    parent_span_id=span.get("parentSpanId") or None,
                                    name=span.get("name", ""),
                                    start_ns=int(span.get("startTimeUnixNano", 0)),
                                    end_ns=int(span.get("endTimeUnixNano", 0)),
                                    attributes=_key_values(span.get("attributes", [])),
                                    status_code=int(span.get("status", {}).get("code", 0)),
                                    resource=resource,
                                )
                            )
    return records
