"""Trace context through the event path: off it leaves no trace anywhere; on it goes writer -> envelope and
Kafka headers -> relay's publish span -> consumer's span, each a child of the one before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.customer import CustomerCreated
from servicekit import tracing
from servicekit.context import correlation_id
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent
from servicekit.outbox import enqueue
from servicekit.outbox.relay import OutboxRelay
from servicekit.outbox.writer import outbox_row
from servicekit.settings import ServiceSettings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _created(customer: str = "c-1") -> CustomerCreated:
    return CustomerCreated(customer_id=customer, kind="person", status="active", created_at=datetime.now(UTC))


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into an in-memory exporter (the process-wide provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def _hex(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


# ---- off ------------------------------------------------------------------------------------------------


def test_without_an_endpoint_nothing_is_set_up_and_events_carry_no_trace_context():
    assert tracing.setup("test", tracing.TracingSettings(exporter_otlp_endpoint="")) is False
    assert not tracing.enabled()
    # OpenTelemetry's API alone: no SDK provider, so the instrumentation-free no-op path is all that runs.
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert tracing.current_context_headers() == {} and tracing.current_trace_id() is None
    row = outbox_row(_created(), source="/crm/test", correlation_id="req-1")
    assert [h[0] for h in row["headers"]] == ["content-type", "ce_type", "ce_id"]
    assert b"traceparent" not in row["payload"]
    with tracing.handle_span(
        "customer.created",
        [("traceparent", TRACEPARENT.encode())],
        envelope_context={},
        topic="t",
        partition=0,
        offset=1,
        group="g",
        published_ms=None,
    ) as span:
        assert span is None


# ---- helpers ----------------------------------------------------------------------------------------------


def test_the_envelope_carries_the_distributed_tracing_extension_for_the_reference_sdk():
    envelope = CloudEvent.wrap(
        _created(), source="/crm/customer", trace={"traceparent": TRACEPARENT, "tracestate": "a=1"}
    )
    parsed = JSONFormat().read(None, envelope.to_json())
    assert parsed.get_extension("traceparent") == TRACEPARENT
    assert parsed.get_extension("tracestate") == "a=1"
    assert CloudEvent.from_json(envelope.to_json()).trace_context() == {"traceparent": TRACEPARENT, "tracestate": "a=1"}


def test_context_is_read_from_kafka_headers_as_bytes_or_outbox_headers_as_text():
    for pairs in ([("traceparent", TRACEPARENT.encode())], [("ce_type", "x"), ("traceparent", TRACEPARENT)]):
        context = tracing.context_from(pairs)
        assert context is not None
        assert format(trace.get_current_span(context).get_span_context().trace_id, "032x") == TRACEPARENT[3:35]
    assert tracing.context_from([("ce_type", b"x")]) is None
    assert tracing.context_from([("traceparent", b"not-a-traceparent")]) is None
    assert tracing.context_from(None) is None


def test_trace_headers_are_replaced_and_the_others_kept_in_order():
    headers = [["content-type", "a"], ["traceparent", "old"], ["ce_id", "1"], ["tracestate", "x=1"]]
    assert tracing.with_trace_headers(headers, {"traceparent": "new"}) == [
        ["content-type", "a"],
        ["ce_id", "1"],
        ["traceparent", "new"],
    ]


# ---- on ---------------------------------------------------------------------------------------------------


def test_an_outbox_row_carries_the_writers_span_in_its_envelope_and_kafka_headers(spans: InMemorySpanExporter):
    tracer = tracing._tracer
    assert tracer is not None
    with tracer.start_as_current_span("request") as request:
        trace_id = tracing.current_trace_id()
        row = outbox_row(_created(), source="/crm/test", correlation_id=trace_id)
    span_context = request.get_span_context()
    assert trace_id == format(span_context.trace_id, "032x")
    envelope = CloudEvent.from_json(row["payload"])
    assert envelope.traceparent is not None
    assert envelope.traceparent.startswith(f"00-{trace_id}-{format(span_context.span_id, '016x')}-")
    assert ["traceparent", envelope.traceparent] in row["headers"]
    assert envelope.correlationid == trace_id  # the log correlation id is the trace id


async def test_relay_and_consumer_spans_continue_the_writers_trace_hop_by_hop(
    spans: InMemorySpanExporter, database: Database
):
    tracer = tracing._tracer
    assert tracer is not None
    sent: list[tuple[str, Any]] = []

    class Producer:
        async def send(self, topic: str, *, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
            sent.append((topic, headers))
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    with tracer.start_as_current_span("request"):
        async with database.transaction() as session:
            await enqueue(session, _created())
    relay = OutboxRelay(database, ServiceSettings(name="test", database_url=database.url))
    assert await relay.publish_batch(Producer()) == 1
    ((topic, headers),) = sent
    with tracing.handle_span(
        "customer.created",
        list(headers),
        envelope_context={},
        topic=topic,
        partition=0,
        offset=7,
        group="retention",
        published_ms=int(datetime.now(UTC).timestamp() * 1000),
    ) as handling:
        assert handling is not None
        assert tracing.current_trace_id() == format(handling.get_span_context().trace_id, "032x")

    by_name = {s.name: s for s in spans.get_finished_spans()}
    request, publish, handle = by_name["request"], by_name["outbox publish"], by_name["handle customer.created"]
    assert publish.context.trace_id == request.context.trace_id == handle.context.trace_id
    assert publish.parent is not None and publish.parent.span_id == request.context.span_id
    assert handle.parent is not None and handle.parent.span_id == publish.context.span_id
    assert publish.attributes is not None and publish.attributes["crm.outbox.wait_s"] >= 0
    assert handle.attributes is not None and handle.attributes["crm.consumer.lag_s"] >= 0
    assert handle.attributes["messaging.consumer.group.name"] == "retention"
    assert publish.attributes["crm.event.type"] == "customer.created"
    # The Kafka headers name the publish span; the envelope still names the writer's span.
    (kafka_traceparent,) = [v for k, v in sent[0][1] if k == "traceparent"]
    assert kafka_traceparent.decode().startswith(f"00-{_hex(publish)[0]}-{_hex(publish)[1]}-")


def test_the_consumer_falls_back_to_the_envelope_when_the_headers_carry_no_context(spans: InMemorySpanExporter):
    with tracing.handle_span(
        "customer.created",
        [("ce_type", b"customer.created")],
        envelope_context={"traceparent": TRACEPARENT, "tracestate": None},
        topic="t",
        partition=0,
        offset=1,
        group="g",
        published_ms=None,
    ):
        token = correlation_id.set(tracing.current_trace_id())
        correlation_id.reset(token)
    (handle,) = spans.get_finished_spans()
    assert _hex(handle)[0] == TRACEPARENT[3:35]
    assert handle.parent is not None and format(handle.parent.span_id, "016x") == TRACEPARENT[36:52]


def test_a_span_continues_the_trace_named_by_an_envelope_and_starts_one_without(spans: InMemorySpanExporter):
    envelope = CloudEvent.wrap(_created(), source="/crm/retention", trace={"traceparent": TRACEPARENT})
    with tracing.envelope_span("webhook deliver", envelope.to_json(), attributes={"crm.event.type": "x"}):
        pass
    with tracing.envelope_span("webhook deliver", b"not json", attributes={}):
        pass
    continued, fresh = spans.get_finished_spans()
    assert _hex(continued)[0] == TRACEPARENT[3:35] and continued.parent is not None
    assert fresh.parent is None and _hex(fresh)[0] != TRACEPARENT[3:35]


@pytest.mark.parametrize("trust_incoming", [True, False])
def test_the_gateway_does_not_adopt_a_callers_trace_context(spans: InMemorySpanExporter, trust_incoming: bool):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/trace-id")
    async def trace_id() -> dict[str, str | None]:
        return {"trace_id": tracing.current_trace_id()}

    tracing.instrument_app(app, trust_incoming=trust_incoming)
    with TestClient(app) as client:
        seen = client.get("/trace-id", headers={"traceparent": TRACEPARENT}).json()["trace_id"]
    assert (seen == TRACEPARENT[3:35]) is trust_incoming


def test_by_default_traces_only_without_sql_spans():
    settings = tracing.TracingSettings(exporter_otlp_endpoint="http://collector:4318")
    assert settings.metrics_exporter == "none" and settings.trace_sql is False


@pytest.mark.parametrize("trace_sql", [True, False])
def test_sql_statements_are_instrumented_only_while_trace_sql_is_on(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, trace_sql: bool
):
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumented: list[Any] = []
    monkeypatch.setattr(SQLAlchemyInstrumentor, "instrument", lambda self, **kw: instrumented.append(kw["engine"]))
    monkeypatch.setattr(tracing, "_trace_sql", trace_sql)
    engine = object()
    tracing.instrument_engine(engine)
    assert instrumented == ([engine] if trace_sql else [])


def test_one_lean_server_span_per_request_named_by_its_route(spans: InMemorySpanExporter):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI(telemetry=tracing.NATIVE_TELEMETRY_OFF)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        return {"trace_id": tracing.current_trace_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    tracing.instrument_app(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        seen = client.get("/things/42").json()["trace_id"]
        assert client.get("/boom").status_code == 500
        assert client.get("/health/live").status_code == 200
    ok, failed = spans.get_finished_spans()  # none for the probe
    assert ok.name == "GET /things/{thing_id}" and ok.kind == trace.SpanKind.SERVER and ok.parent is None
    assert _hex(ok)[0] == seen
    assert dict(ok.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/things/42",
        "http.route": "/things/{thing_id}",
        "http.response.status_code": 200,
    }
    assert failed.name == "GET /boom" and failed.status.status_code == trace.StatusCode.ERROR
    assert (failed.attributes or {})["http.response.status_code"] == 500
