"""The lean tracer's spans: sampled as the SDK's ParentBased(TraceIdRatioBased) would, nested with the SDK's
spans either way, and exported as exactly the bytes the SDK's encoder writes for the same span."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from bench.otlp import OtlpReceiver
from servicekit.tracing_lean import LeanSpan, LeanTracer, lean_tracer
from servicekit.tracing_wire import EncodingBatchSpanProcessor, LeanOTLPSpanExporter, encode_request

RESOURCE = Resource.create({"service.name": "retention", "service.namespace": "crm"})


class Queue(EncodingBatchSpanProcessor):
    """Keeps what the lean spans queue, in order (no export thread work)."""

    def __init__(self) -> None:
        super().__init__(LeanOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces"))
        self.queued: list[tuple[int, bytes]] = []

    def emit_encoded(self, encoded: tuple[int, bytes]) -> None:
        self.queued.append(encoded)


@pytest.fixture
def queue():
    q = Queue()
    yield q
    q.shutdown()


def _tracer(queue: Queue, ratio: float = 1.0) -> LeanTracer:
    return lean_tracer(TracerProvider(resource=RESOURCE), queue, ratio, "crm.servicekit")


def _as_readable(span: LeanSpan) -> ReadableSpan:
    """The SDK's ReadableSpan with the same fields, for its own encoder."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[Event(e.name, e.attributes, e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def test_a_lean_span_is_encoded_as_the_sdk_encodes_the_same_span(queue: Queue):
    tracer = _tracer(queue)
    remote = SpanContext(0xA1, 0xB2, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("v", "1")]))
    ended: list[LeanSpan] = []
    attributes = {"messaging.kafka.offset": 10**12, "crm.consumer.lag_s": 0.25, "names": ["a", "bé"], "no": False}
    with tracer.start_as_current_span(
        "handle score.updated", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as handle:  # fmt: skip
        assert isinstance(handle, LeanSpan)
        ended.append(handle)
        server = tracer.start_span("POST", kind=SpanKind.SERVER, attributes={"url.path": "/x"})
        assert isinstance(server, LeanSpan)
        server.update_name("POST /interactions")
        server.set_attribute("http.response.status_code", 201)
        server.add_event("an event", {"x": 0.1})
        server.end()
        ended.append(server)
    with pytest.raises(RuntimeError), tracer.start_as_current_span("outbox publish", kind=SpanKind.PRODUCER) as fail:
        assert isinstance(fail, LeanSpan)
        ended.append(fail)
        raise RuntimeError("boom")
    assert fail.status.status_code is StatusCode.ERROR and [e.name for e in fail.events] == ["exception"]
    assert handle.context.trace_id == 0xA1 and handle.parent == remote
    assert handle.context.trace_state == remote.trace_state
    assert server.parent == handle.context and fail.parent is None
    assert len(queue.queued) == 3  # each once, as it ended
    expected = encode_spans([_as_readable(s) for s in (server, handle, fail)]).SerializePartialToString()
    assert encode_request(queue.queued) == expected


def test_sampling_follows_the_parent_and_the_ratio_for_roots(queue: Queue):
    never, always = _tracer(queue, 0.0), _tracer(queue, 1.0)
    sampled = set_span_in_context(NonRecordingSpan(SpanContext(1, 2, True, TraceFlags(TraceFlags.SAMPLED))))
    unsampled = set_span_in_context(NonRecordingSpan(SpanContext(1, 2, True, TraceFlags(TraceFlags.DEFAULT))))
    assert not never.start_span("root").is_recording()
    assert not never.start_span("root").get_span_context().trace_flags.sampled
    assert never.start_span("child", context=sampled).is_recording()
    assert not always.start_span("child", context=unsampled).is_recording()
    assert always.start_span("root").is_recording()
    # The same decisions as the SDK's sampler for these ratios, trace id by trace id.
    sdk = ParentBased(TraceIdRatioBased(0.5))
    half = _tracer(queue, 0.5)
    for trace_id in (1, 2**63, 2**63 - 1, 2**64 - 1, 2**100 + 5):
        half._trace_id = lambda trace_id=trace_id: trace_id  # type: ignore[method-assign]
        decided = sdk.should_sample(None, trace_id, "root").decision.is_sampled()
        assert half.start_span("root").get_span_context().trace_flags.sampled is decided
    assert queue.queued == []  # nothing ended, nothing queued


def test_lean_and_sdk_spans_nest_and_leave_through_one_exporter():
    receiver = OtlpReceiver().start()
    provider = TracerProvider(resource=RESOURCE)
    processor = EncodingBatchSpanProcessor(LeanOTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"))
    provider.add_span_processor(processor)
    lean, sdk = lean_tracer(provider, processor, 1.0, "crm.servicekit"), provider.get_tracer("httpx")
    try:
        with (
            lean.start_as_current_span("POST /interactions", kind=SpanKind.SERVER) as server,
            sdk.start_as_current_span("GET", kind=SpanKind.CLIENT) as client,
        ):
            assert trace.get_current_span() is client
            with lean.start_as_current_span("webhook deliver"):
                pass
        provider.force_flush()
        by_name = {s.name: s for s in receiver.spans}
        assert set(by_name) == {"POST /interactions", "GET", "webhook deliver"}
        assert by_name["GET"].parent_id == format(server.get_span_context().span_id, "016x")
        assert by_name["webhook deliver"].parent_id == format(client.get_span_context().span_id, "016x")
        assert len({s.trace_id for s in receiver.spans}) == 1
        assert {s.service for s in receiver.spans} == {"retention"}
    finally:
        provider.shutdown()
        receiver.stop()
