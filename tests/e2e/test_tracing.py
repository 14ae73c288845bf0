"""One complaint through the gateway is one trace, hop by hop, on the real platform with tracing on.

The platform's processes are restarted with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver in
this test process (bench.otlp), and restarted without it afterwards, so the other tests see tracing off.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bench.otlp import OtlpReceiver, ReceivedSpan
from runner.launcher import Platform
from tests.e2e.helpers import alerts_for, create_customer, eventually


def _restart(platform: Platform, env: dict[str, str]) -> None:
    names = list(platform.specs)
    for name in reversed(names):
        platform.stop(name)
    for name in names:
        platform.start(name, env=env)
    platform.wait_ready(timeout_s=120)


@pytest.fixture(scope="module")
def traced(platform: Platform) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    # Spans leave each process within a fraction of a second instead of the default five.
    _restart(
        platform,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_TRACE_SQL": "true"},
    )
    try:
        yield receiver
    finally:
        _restart(platform, {})
        receiver.stop()


@pytest.fixture
async def webhook_target() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback webhook receiver: its URL and the headers of each delivery it got."""
    received: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        received.append(headers)
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", received
    server.close()


def _descends(span: ReceivedSpan, ancestor: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    parent = by_id.get(span.parent_id)
    while parent is not None:
        if parent.span_id == ancestor.span_id:
            return True
        parent = by_id.get(parent.parent_id)
    return False


def _sql(span: ReceivedSpan) -> str:
    text = span.attributes.get("db.statement") or span.attributes.get("db.query.text") or ""
    return str(text).lower().replace('"', "")


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert found, f"no span {name!r} from {service}; spans: {sorted({(s.service, s.name) for s in spans})}"
    return found[0]


async def test_a_complaint_through_the_gateway_is_one_trace_from_the_request_to_the_committed_alert(
    traced: OtlpReceiver, gateway: httpx.AsyncClient, webhook_target: tuple[str, list[dict[str, str]]]
) -> None:
    url, deliveries = webhook_target
    hook = {"url": url, "event_types": ["alert.raised"], "secret": "e2e-webhook-secret-0123456789"}
    response = await gateway.post("/api/v1/webhooks", json=hook)
    assert response.status_code == 201, response.text
    hook_id = response.json()["id"]
    try:
        await _one_trace(traced, gateway, deliveries)
    finally:
        assert (await gateway.delete(f"/api/v1/webhooks/{hook_id}")).status_code == 204


async def _one_trace(traced: OtlpReceiver, gateway: httpx.AsyncClient, deliveries: list[dict[str, str]]) -> None:
    customer = await create_customer(gateway)
    response = await gateway.post(
        "/api/v1/interactions",
        json={
            "customer_id": customer["id"],
            "type": "complaint",
            "channel": "phone",
            "initiated_by": "customer",
            "severity": "high",
            "category": "delivery",
            "text": "The order arrived two weeks late.",
        },
    )
    assert response.status_code == 201, response.text
    # The correlation id the gateway answers with is the trace id.
    trace_id = response.headers["x-request-id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    # Restarted with tracing on, each consumer first works through what the tests before this one left in
    # its topics (with a span per statement), so the complaint waits its turn: a liveness bound, not a speed one.
    await eventually(lambda: alerts_for(gateway, customer["id"]), what="the complaint's alert", timeout_s=180)

    def hops() -> set[tuple[str, str]]:
        return {(s.service, s.name) for s in traced.trace(trace_id)}

    wanted = {
        ("interaction", "outbox publish"),
        ("scoring", "handle interaction.recorded"),
        ("scoring", "outbox publish"),
        ("retention", "handle score.updated"),
        ("retention", "handle complaint.opened"),
        ("retention", "webhook deliver"),
    }

    async def complete() -> bool:
        return wanted <= hops()

    await eventually(complete, what=f"the trace's spans, {sorted(wanted)}; have {sorted(hops())}", timeout_s=120)
    spans = traced.trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    assert {"gateway", "interaction", "scoring", "retention"} <= {s.service for s in spans}

    # gateway -> interaction API -> its outbox relay -> scoring's consumer -> its relay -> retention's consumer
    gateway_root = next(s for s in spans if s.service == "gateway" and s.parent_id == "")
    interaction_api = next(s for s in spans if s.service == "interaction" and s.kind == 2)  # SERVER
    interaction_publishes = [s for s in spans if s.service == "interaction" and s.name == "outbox publish"]
    scoring_handle = _one(spans, "scoring", "handle interaction.recorded")
    scoring_publish = _one(spans, "scoring", "outbox publish")
    retention_handle = _one(spans, "retention", "handle score.updated")
    complaint_handle = _one(spans, "retention", "handle complaint.opened")
    # One publish span per event: interaction.recorded's leads to scoring, complaint.opened's to retention.
    interaction_publish = next(p for p in interaction_publishes if _descends(scoring_handle, p, by_id))
    chain = [gateway_root, interaction_api, interaction_publish, scoring_handle, scoring_publish, retention_handle]
    for earlier, later in itertools.pairwise(chain):
        assert _descends(later, earlier, by_id), f"{later.service} {later.name} is not under {earlier.name}"
    complaint_publish = next(p for p in interaction_publishes if _descends(complaint_handle, p, by_id))
    assert _descends(complaint_publish, interaction_api, by_id)

    # SQL statements are spans of the request that ran them.
    inserts = [s for s in spans if s.service == "interaction" and "insert into interactions" in _sql(s)]
    assert inserts and all(_descends(s, interaction_api, by_id) for s in inserts)

    # The outbox wait and the consumer lag ride on the spans.
    assert interaction_publish.attributes["crm.outbox.wait_s"] >= 0
    assert retention_handle.attributes["crm.consumer.lag_s"] >= 0
    assert retention_handle.attributes["messaging.consumer.group.name"] == "retention"

    # The alert committed: its alert.raised, written in the same transaction, was published in the trace.
    raised = [
        s
        for s in spans
        if s.service == "retention"
        and s.name == "outbox publish"
        and s.attributes.get("crm.event.type") == "alert.raised"
    ]
    assert raised, "no alert.raised publish in the trace"
    assert any(_descends(s, complaint_handle, by_id) or _descends(s, retention_handle, by_id) for s in raised)

    # The webhook delivery of alert.raised continues the trace, and the receiver gets its context.
    delivered = _one(spans, "retention", "webhook deliver")
    assert delivered.attributes["crm.event.type"] == "alert.raised"
    assert _descends(delivered, complaint_handle, by_id) or _descends(delivered, retention_handle, by_id)
    assert any(h.get("traceparent", "").split("-")[1:2] == [trace_id] for h in deliveries), deliveries
