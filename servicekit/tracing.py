"""OpenTelemetry traces and metrics for every process, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off (the default), nothing is set up: the global tracer provider stays OpenTelemetry's no-op one, no
instrumentation is installed, events carry no trace context and the helpers below return at their first
line. On, each process exports spans (encoded by servicekit.tracing_wire) and metrics over OTLP/HTTP to
that endpoint and:

- each HTTP request is one server span (ServerSpanMiddleware, a lean ASGI middleware of our own), httpx
  and aiohttp calls are client spans carrying the W3C ``traceparent`` header between processes, and, with
  OTEL_TRACE_SQL=true, each SQL statement is a span (the maintained OpenTelemetry instrumentation packages
  for the clients and SQLAlchemy);
- an event written to the outbox carries the trace context of the request or handler that wrote it, in
  its envelope (the CloudEvents distributed-tracing extension: ``traceparent``, ``tracestate``) and in
  its Kafka headers;
- the relay publishes each row in an ``outbox publish`` span, a child of the writer's span, which
  carries the outbox wait (write to publish) and replaces the Kafka headers' context with its own;
- the consumer handles each event in a ``handle <event type>`` span, a child of the publish span, which
  carries the consumer lag (publish to handling), so the next hop's events are its children in turn.

Kafka spans are made here rather than by the aiokafka instrumentation: the outbox separates a send from
the request that caused it, so the parent of a publish is the context stored with the row, not whatever
is current in the relay's loop. The log correlation id is the trace id while tracing is on
(servicekit.middleware, servicekit.inbox.applier).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Literal

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

log = logging.getLogger("servicekit.tracing")

TRACE_HEADERS = ("traceparent", "tracestate")  # W3C trace context: the Kafka headers and envelope attributes
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_tracer: Tracer | None = None  # set while tracing is on
_trace_sql = True


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables this platform reads (OTEL_*), in every process."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    # OTLP/HTTP collector base address, e.g. http://otel-collector:4318; spans go to <it>/v1/traces and
    # metrics to <it>/v1/metrics. Empty: tracing is off and costs nothing.
    exporter_otlp_endpoint: str = ""
    # Share of new traces recorded (0 to 1); a hop continues its parent's decision, so a trace is whole or absent.
    traces_sampler_arg: float = Field(1.0, ge=0, le=1)
    # "otlp": also export the instrumentations' OpenTelemetry metrics (HTTP and database durations) to the
    # endpoint. "none" (the default): traces only; every process already serves these signals on /metrics
    # for Prometheus, and recording them twice per request is most of what tracing would cost otherwise.
    metrics_exporter: Literal["none", "otlp"] = "none"
    # How often OpenTelemetry metrics are exported, when metrics_exporter is "otlp".
    metric_export_interval: int = Field(60000, ge=1000)
    # The platform's own switch (not an OpenTelemetry variable): true adds a span per SQL statement, a child
    # of the request or handler that ran it. Off by default: statement spans about double the spans of each
    # interaction and land on every statement of the consumers' batches, the hottest path, while the hop chain
    # (request, outbox wait, publish, consumer lag, handling) already shows where an interaction's time went.
    # Turn it on for a process when its request or handle span shows the time is spent inside it.
    trace_sql: bool = False


def enabled() -> bool:
    return _tracer is not None


def setup(service: str, settings: TracingSettings | None = None, *, http_clients: bool = True) -> bool:
    """Turn tracing on for this process when an OTLP endpoint is configured; returns whether it is on.

    Call once, before the app, its database engine and its HTTP clients are created. http_clients=False
    (the gateway) leaves httpx and aiohttp uninstrumented: the caller passes the context on itself
    (current_context_headers), so the next hop's server span is a child of this process's server span
    without a client span between them.
    """
    global _tracer, _trace_sql
    settings = settings or TracingSettings()
    if not settings.exporter_otlp_endpoint:
        return False
    if _tracer is not None:
        return True
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from servicekit.tracing_lean import lean_tracer
    from servicekit.tracing_wire import EncodingBatchSpanProcessor, LeanOTLPSpanExporter

    base = settings.exporter_otlp_endpoint.rstrip("/")
    resource = Resource.create({"service.name": service, "service.namespace": "crm"})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.traces_sampler_arg)))
    processor = EncodingBatchSpanProcessor(LeanOTLPSpanExporter(endpoint=f"{base}/v1/traces"))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if settings.metrics_exporter == "otlp":
        from opentelemetry import metrics
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics"), export_interval_millis=settings.metric_export_interval
        )
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    if http_clients:
        HTTPXClientInstrumentor().instrument()
        AioHttpClientInstrumentor().instrument()
    _trace_sql = settings.trace_sql
    # The platform's own spans (server, publish, handle, webhook deliver) from the lean tracer; the
    # instrumentation packages' spans from the SDK's provider; both leave through `processor`.
    _tracer = lean_tracer(provider, processor, settings.traces_sampler_arg, "crm.servicekit")
    log.info("tracing on", extra={"sample_ratio": settings.traces_sampler_arg})
    return True


def shutdown() -> None:
    """Flush the spans still queued (a process stopping); nothing when tracing is off."""
    if _tracer is None:
        return
    provider: Any = trace.get_tracer_provider()
    provider.force_flush(5000)


_TRACE_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate"})
_UNTRACED_PREFIXES = ("/health/", "/metrics")  # probes and scrapes: no span, as they carry no work of interest
# For FastAPI(telemetry=...): the framework's own OpenTelemetry middleware stays off; ServerSpanMiddleware is
# the one server span (the native one would add a second span per request and adopt any caller's context).
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class ServerSpanMiddleware:
    """Pure ASGI: one SERVER span per HTTP request, current while the app runs, with the few attributes that
    identify it (method, route template, path, status). Leaner than the generic ASGI instrumentation: no
    per-request attribute harvest from headers, no route search of its own (the route template is read from
    ``scope["route"]``, set by the router or the gateway's dispatcher), no wrapped ``receive``, no metrics
    (every process serves its own on /metrics).

    trust_incoming=False (the gateway, facing the internet): a caller's trace context is ignored, so every
    public request starts a trace of ours; a caller could otherwise pick the trace id our logs are
    correlated by, or mark every request sampled and defeat the sampling ratio.
    """

    def __init__(self, app: Any, tracer: Tracer, *, trust_incoming: bool = True) -> None:
        self.app = app
        self.tracer = tracer
        self.trust_incoming = trust_incoming

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        parent: Context | None = None
        if self.trust_incoming:
            carrier = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in scope["headers"]
                if name in _TRACE_CONTEXT_HEADERS
            }
            if carrier:
                parent = _PROPAGATOR.extract(carrier)
        method: str = scope["method"]
        span = self.tracer.start_span(
            method,
            context=parent or Context(),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        status = 0

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            span.record_exception(exc)
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            if status:
                span.set_attribute("http.response.status_code", status)
            if status >= 500 or not status:
                span.set_status(StatusCode.ERROR)
            span.end()
            otel_context.detach(token)


def instrument_app(app: Any, *, trust_incoming: bool = True) -> None:
    """A server span per request of this FastAPI app (health and metrics left out), outermost, so the
    request-context middleware sees it current; nothing when off. See ServerSpanMiddleware."""
    if _tracer is None:
        return
    tracer = _tracer
    build = app.build_middleware_stack

    def build_with_server_span() -> Any:
        return ServerSpanMiddleware(build(), tracer, trust_incoming=trust_incoming)

    app.build_middleware_stack = build_with_server_span


def instrument_engine(engine: Any) -> None:
    """A span per SQL statement of this SQLAlchemy (async) engine; nothing when off or OTEL_TRACE_SQL=false."""
    if _tracer is None or not _trace_sql:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops below SQLAlchemy 2.1; the engine-event API it uses is unchanged there (the
    # end-to-end tracing test checks SQL spans arrive), so the version check is skipped.
    SQLAlchemyInstrumentor().instrument(engine=getattr(engine, "sync_engine", engine), skip_dep_check=True)


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), None when tracing is off or no span is current."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# ---- the context carried by events --------------------------------------------------------------------


def current_context_headers() -> dict[str, str]:
    """The current span's W3C context as {"traceparent": ..., "tracestate": ...}; {} when off or none."""
    if _tracer is None:
        return {}
    span = trace.get_current_span()
    return _traceparent(span) if span.get_span_context().is_valid else {}


def context_from(pairs: Iterable[tuple[str, Any]] | None) -> Context | None:
    """The trace context in Kafka or outbox headers ((name, str or bytes) pairs); None if they carry none."""
    carrier: dict[str, str] = {}
    for name, value in pairs or ():
        if name in TRACE_HEADERS and name not in carrier:
            carrier[name] = value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)
    traceparent = carrier.get("traceparent")
    if traceparent is None:
        return None
    if "tracestate" not in carrier and (parsed := _parse_traceparent(traceparent)) is not None:
        return parsed
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _parse_traceparent(value: str) -> Context | None:
    """A version-00 ``traceparent`` as the propagator reads it, without its regular expression and carrier
    dictionaries (the form every event of this platform carries); None: leave it to the propagator."""
    match = _TRACEPARENT_00.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, flags = int(match[1], 16), int(match[2], 16), int(match[3], 16)
    if not trace_id or not span_id:
        return None
    span_context = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _traceparent(span: Span) -> dict[str, str]:
    """The W3C headers naming `span` as the parent (what the propagator's inject writes)."""
    context = span.get_span_context()
    headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


def with_trace_headers(headers: Sequence[Sequence[str]], trace_headers: Mapping[str, str]) -> list[list[str]]:
    """`headers` ([name, value] pairs) with their trace context replaced by `trace_headers`."""
    kept = [list(h) for h in headers if h[0] not in TRACE_HEADERS]
    return [*kept, *([name, value] for name, value in trace_headers.items())]


# ---- spans of the event path --------------------------------------------------------------------------


def start_publish_span(topic: str, headers: Sequence[Sequence[str]], *, wait_s: float) -> tuple[Span, list[list[str]]]:
    """The relay's span for one outbox row, child of the context stored with it (the caller ends it when
    the broker answers), and the row's headers carrying the span's own context. Only while tracing is on."""
    assert _tracer is not None
    parent = context_from((h[0], h[1]) for h in headers)
    event_type = next((h[1] for h in headers if h[0] == "ce_type"), "raw")
    span = _tracer.start_span(
        "outbox publish",
        context=parent or Context(),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "crm.event.type": event_type,
            "crm.outbox.wait_s": wait_s,
        },
    )
    return span, with_trace_headers(headers, _traceparent(span))


@contextmanager
def handle_span(
    event_type: str,
    headers: Iterable[tuple[str, Any]] | None,
    *,
    envelope_context: Mapping[str, str | None],
    topic: str,
    partition: int,
    offset: int,
    group: str,
    published_ms: int | None,
) -> Iterator[Span | None]:
    """The consumer's span for one event, child of the publish span (its Kafka headers) or, failing
    that, of the writer's span (its envelope); yields None when tracing is off."""
    if _tracer is None:
        yield None
        return
    parent = context_from(headers) or context_from((k, v) for k, v in envelope_context.items() if v)
    lag_s = max(time.time() - published_ms / 1000, 0.0) if published_ms is not None else 0.0
    with _tracer.start_as_current_span(
        f"handle {event_type}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.consumer.group.name": group,
            "crm.event.type": event_type,
            "crm.consumer.lag_s": lag_s,
        },
    ) as span:
        yield span


@contextmanager
def envelope_span(name: str, payload: bytes, *, attributes: Mapping[str, str | int | float]) -> Iterator[None]:
    """A span, current while the block runs, that continues the trace of the CloudEvents envelope in
    `payload` (its distributed-tracing extension), e.g. a webhook delivery of that event; nothing when off."""
    if _tracer is None:
        yield
        return
    parent = None
    with suppress(ValueError):
        envelope = orjson.loads(payload)
        if isinstance(envelope, dict):
            parent = context_from((k, v) for k, v in envelope.items() if k in TRACE_HEADERS and isinstance(v, str))
    with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.INTERNAL, attributes=dict(attributes)):
        yield
