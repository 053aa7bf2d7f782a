"""OpenTelemetry in a flow-run process: Prefect's flow and task spans and the agent's spans in one trace.

Prefect 3.8 opens an OTel span per flow run and per task run with the tracer provider that is global
when it starts them; with none installed they are no-op spans, and each agent run (whose spans nest
under the current span) starts a trace of its own. `install_tracer_provider` installs an SDK provider
globally. It must run before Prefect opens the flow-run span, i.e. when the flow module is imported:
a worker's flow-run process imports the entrypoint module first, then runs the flow.

The agent's spans keep going where `open_generation_context` sends them (``traces/`` in the store,
or an OTLP collector). Prefect's spans go to the same place: to the collector directly, or, with the
file exporter, to a local spool that `store_process_spans` copies into the store's ``traces/``
(task-run spans have ended by then; the flow-run span, still open, is not in it — its id is the flow
run's ``__OTEL_TRACEPARENT`` label).
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from scenario_lib.store.dataset import DatasetStore

# Set by Prefect's workers and runners in every flow-run process they start.
FLOW_RUN_ID_ENV = "PREFECT__FLOW_RUN_ID"
SERVICE_NAME = "scenario-flows"


@dataclass(frozen=True)
class ProcessTracing:
    """The installed provider and, with the file exporter, the local file its spans are spooled to."""

    provider: TracerProvider
    spool: Path | None


_lock = threading.Lock()
_installed: list[ProcessTracing] = []


def install_tracer_provider() -> ProcessTracing | None:
    """In a worker's flow-run process, install a tracer provider globally (once); elsewhere None.

    Outside a flow-run process (``prefect deploy`` importing the module, in-process tests) nothing is
    installed: a process-global provider cannot be replaced later. Invalid settings install nothing
    either; the flow reports them when it reads its settings.
    """
    if not os.environ.get(FLOW_RUN_ID_ENV):
        return None
    with _lock:
        if _installed:
            return _installed[0]
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from pydantic import ValidationError

        from scenario_lib.config import TraceExporter, load_settings
        from scenario_lib.errors import ConfigError
        from scenario_lib.tracing import OtlpJsonLinesExporter, RedactingSpanExporter, configure_tracing

        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return None  # someone else (e.g. OTel auto-instrumentation) owns the global provider
        try:
            settings = load_settings()
            secrets = settings.secret_values()
            spool: Path | None = None
            if settings.tracing.exporter is TraceExporter.FILE:
                spool = Path(tempfile.mkdtemp(prefix="prefect-spans-")) / "spans.jsonl"
                provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
                exporter = RedactingSpanExporter(OtlpJsonLinesExporter(spool), secrets)
                provider.add_span_processor(SimpleSpanProcessor(exporter))
            else:  # OTLP: the agent's collector; NONE: spans with real ids (for nesting), exported nowhere
                provider = configure_tracing(settings.tracing, secrets=secrets, service_name=SERVICE_NAME)
        except (ValidationError, ConfigError):
            return None
        trace.set_tracer_provider(provider)
        _installed.append(ProcessTracing(provider=provider, spool=spool))
        return _installed[0]


def installed_tracing() -> ProcessTracing | None:
    """What `install_tracer_provider` installed in this process, if anything."""
    return _installed[0] if _installed else None


def store_process_spans(store: DatasetStore, label: str) -> str | None:
    """Move the spooled Prefect spans into the store's ``traces/`` as ``{label}-….jsonl``; returns the key."""
    tracing = installed_tracing()
    if tracing is None or tracing.spool is None:
        return None
    from scenario_lib.runs.generation import store_spans

    tracing.provider.force_flush()
    with _lock:
        if not tracing.spool.is_file():
            return None
        moved = tracing.spool.with_suffix(".moving")
        # The exporter reopens the spool for every span, so renaming it hands over exactly what ended so far.
        tracing.spool.rename(moved)
    try:
        return store_spans(store, moved, label=label)
    finally:
        moved.unlink(missing_ok=True)


__all__ = ["FLOW_RUN_ID_ENV", "ProcessTracing", "install_tracer_provider", "installed_tracing", "store_process_spans"]
