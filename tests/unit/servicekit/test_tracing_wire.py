"""The lean OTLP encoding writes exactly the bytes of the SDK's encoder, for every shape of span."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from servicekit import tracing
from servicekit.tracing_wire import encode_request


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "retention", "n": 3, "f": 1.5, "b": True}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ours, other = provider.get_tracer("crm.servicekit"), provider.get_tracer("lib", "1.2", attributes={"k": "v"})
    remote = SpanContext(0xA1, 0xB2, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("v", "1")]))
    for i in range(3):
        attributes = {
            "messaging.destination.name": "crm.scoring.v1",
            "messaging.kafka.offset": 10**12 + i,
            "negative": -5,
            "crm.consumer.lag_s": 0.25,
            "zero": 0,
            "no": False,
            "empty": "",
            "names": ["a", "bé"],
            "numbers": [1, 2],
            "long": "x" * 300,
        }
        with ours.start_as_current_span(
            "handle score.updated", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:  # fmt: skip
            span.add_event("an event", {"x": 0.1})
            with other.start_as_current_span("inner", links=[Link(span.get_span_context(), {"l": 1}), Link(remote)]):
                pass
            with ours.start_as_current_span("failed", kind=SpanKind.PRODUCER) as failed:
                failed.set_status(Status(StatusCode.ERROR, "boom"))
        ours.start_span("root", kind=SpanKind.SERVER).end()
    return list(exporter.get_finished_spans())


def test_the_request_is_byte_for_byte_the_sdks_encoding():
    spans = _spans()
    expected = encode_spans(spans).SerializePartialToString()
    assert encode_request(spans) == expected
    decoded = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert sum(len(s.spans) for r in decoded.resource_spans for s in r.scope_spans) == len(spans)
    assert encode_request([]) == b""


@pytest.mark.parametrize(
    "value",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ],
)
def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it(value: str):
    ours = tracing.context_from([("traceparent", value)])
    theirs = tracing._PROPAGATOR.extract({"traceparent": value})
    assert ours is not None
    from opentelemetry import trace

    assert trace.get_current_span(ours).get_span_context() == trace.get_current_span(theirs).get_span_context()


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c8031_c-b7ad6b7169203331-01",
        "00-0x f7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "0af7651916cd43dd8448eb211c80319c",
    ],
)
def test_a_malformed_traceparent_starts_no_trace(value: str):
    assert tracing.context_from([("traceparent", value)]) is None


def test_the_lean_exporter_posts_the_spans_to_an_otlp_http_receiver():
    from bench.otlp import OtlpReceiver
    from servicekit.tracing_wire import LeanOTLPSpanExporter

    receiver = OtlpReceiver().start()
    try:
        exporter = LeanOTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")
        spans = _spans()
        assert exporter.export(spans).name == "SUCCESS"
        assert receiver.span_count == len(spans)
        assert {s.name for s in receiver.spans} == {s.name for s in spans}
        assert {s.service for s in receiver.spans} == {"retention"}
        exporter.shutdown()
        assert exporter.export(spans).name == "FAILURE"
    finally:
        receiver.stop()


def test_spans_encoded_as_they_end_make_the_same_request():
    from servicekit.tracing_wire import encode_span

    spans = _spans()
    expected = encode_spans(spans).SerializePartialToString()
    assert encode_request([encode_span(s) for s in spans]) == expected
    assert encode_request([encode_span(s) if i % 2 else s for i, s in enumerate(spans)]) == expected


def test_the_encoding_processor_exports_what_was_sampled():
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from bench.otlp import OtlpReceiver
    from servicekit.tracing_wire import EncodingBatchSpanProcessor, LeanOTLPSpanExporter

    receiver = OtlpReceiver().start()
    try:
        for sampler, expected in ((None, 3), (ALWAYS_OFF, 0)):
            provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
            provider.add_span_processor(
                EncodingBatchSpanProcessor(LeanOTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"))
            )
            tracer = provider.get_tracer("t")
            before = receiver.span_count
            with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
                tracer.start_span("leaf").end()
            provider.shutdown()
            assert receiver.span_count - before == expected
        assert [(s.name, s.parent_id != "") for s in receiver.spans] == [
            ("leaf", True),
            ("inner", True),
            ("outer", False),
        ]
    finally:
        receiver.stop()
