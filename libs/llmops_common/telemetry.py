"""OpenTelemetry tracing for every service: W3C context in and out of each HTTP hop, one trace per request.

Configured with the standard variables:
  OTEL_TRACES_EXPORTER   none (default) | otlp | console | file
  OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   where `otlp` sends (OTLP/HTTP)
  LLMOPS_TRACES_FILE     JSON-lines file for `file` (the embedded default of `make up`)
With `none` no middleware is installed at all, so tracing costs nothing when off.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROVIDERS: dict[str, TracerProvider] = {}
_LOCK = threading.Lock()


_Headers = TypeVar("_Headers", bound=MutableMapping[str, str])  # callers get back the type they passed


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per span to a file (readable without any tracing backend)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the batch."""
        with self.path.open("a") as out:
            for span in spans:
                ctx = span.get_span_context()
                if ctx is None:
                    continue
                out.write(
                    json.dumps(
                        {
                            "trace_id": format(ctx.trace_id, "032x"),
                            "span_id": format(ctx.span_id, "016x"),
                            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                            "name": span.name,
                            "service": span.resource.attributes.get("service.name"),
                            "kind": span.kind.name,
                            "start_ns": span.start_time,
                            "end_ns": span.end_time,
                            "status": span.status.status_code.name,
                            "attributes": dict(span.attributes or {}),
                        },
                        default=str,
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def tracing_enabled() -> bool:
    """Whether an exporter is configured."""
    return os.environ.get("OTEL_TRACES_EXPORTER", "none").lower() not in ("", "none")


def tracer_provider(service: str) -> TracerProvider | None:
    """The provider for this process (created once), or None when tracing is off."""
    if not tracing_enabled():
        return None
    with _LOCK:
        if service in _PROVIDERS:
            return _PROVIDERS[service]
        kind = os.environ.get("OTEL_TRACES_EXPORTER", "none").lower()
        provider = TracerProvider(resource=Resource.create({"service.name": f"llmops-{service}"}))
        exporter: SpanExporter
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        else:
            exporter = JsonLinesExporter(Path(os.environ.get("LLMOPS_TRACES_FILE", ".llmops/traces.jsonl")))
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        _PROVIDERS[service] = provider
        return provider


def inject_trace_headers(headers: _Headers) -> _Headers:
    """Add `traceparent` (and `tracestate`) of the current span to outgoing headers."""
    propagate.inject(headers)
    return headers


def current_trace_id() -> str | None:
    """Hex trace id of the current span, for trace events and logs."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def set_span_attributes(attributes: Mapping[str, Any]) -> None:
    """Attach attributes (e.g. GenAI semantic conventions) to the current span, if one is recording."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


class TracingMiddleware:
    """A server span per HTTP request, continuing the caller's trace from its `traceparent` header."""

    def __init__(self, app: ASGIApp, provider: TracerProvider) -> None:
        self.app = app
        self.tracer = provider.get_tracer("llmops")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/metrics", "/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = propagate.extract(carrier)
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": scope["method"], "url.path": scope["path"]})

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            token = context.attach(trace.set_span_in_context(span, parent))
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                context.detach(token)


def install_tracing(app: Any, service: str) -> None:
    """Add the tracing middleware when an exporter is configured."""
    provider = tracer_provider(service)
    if provider is not None:
        app.add_middleware(TracingMiddleware, provider=provider)
