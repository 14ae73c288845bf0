"""The proxy passes the gateway's trace context on itself (no client span): the service's server span is a
child of the gateway's span; with tracing off no trace header is sent."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams
from servicekit import tracing
from tests.unit.gateway.fakes import FakeService


async def _headers_sent(
    monkeypatch: pytest.MonkeyPatch, service: FakeService, traced: bool
) -> tuple[dict[str, str], str | None]:
    upstreams = Upstreams(GatewaySettings(interaction_url=service.url))
    provider = TracerProvider()
    trace_id = None
    try:
        if traced:
            tracer = provider.get_tracer("test")
            monkeypatch.setattr(tracing, "_tracer", tracer)
            with tracer.start_as_current_span("gateway request") as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                await upstreams.send("interaction", "GET", "/interactions")
        else:
            await upstreams.send("interaction", "GET", "/interactions")
    finally:
        await upstreams.aclose()
        provider.shutdown()
    return service.seen[0].headers, trace_id


async def test_the_upstream_request_carries_the_gateways_span_context(
    monkeypatch: pytest.MonkeyPatch, fakes: dict[str, FakeService]
) -> None:
    headers, trace_id = await _headers_sent(monkeypatch, fakes["interaction"], traced=True)
    assert trace_id is not None and headers["traceparent"].split("-")[1] == trace_id


async def test_without_tracing_no_trace_context_is_sent(
    monkeypatch: pytest.MonkeyPatch, fakes: dict[str, FakeService]
) -> None:
    headers, _ = await _headers_sent(monkeypatch, fakes["interaction"], traced=False)
    assert "traceparent" not in headers
