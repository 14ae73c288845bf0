"""OTLP/HTTP span export with the request body written straight in protobuf's wire format.

The SDK's OTLP exporter first builds a protobuf message object per span, attribute, value, event and
link (``encode_spans``) and then serializes them: on the platform's small spans that was most of what a
span cost with tracing on. `encode_request` writes the same ExportTraceServiceRequest bytes directly
(fields in field-number order, defaults left out, as protobuf does; a unit test decodes them with the
generated classes and compares with the SDK's encoding), and `LeanOTLPSpanExporter` is the SDK's
exporter (its transport, retries, timeouts, headers and compression) sending those bytes.
"""

from __future__ import annotations

import logging
import struct
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

log = logging.getLogger("servicekit.tracing")

_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_FIXED32 = struct.Struct("<I")
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")


_SMALL = [bytes((n,)) for n in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64: two's complement in ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


_LEN_TAGS = [_tag(field, 2) for field in range(16)]


def _len(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message)."""
    n = len(payload)
    return _LEN_TAGS[field] + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _str(field: int, value: str | None) -> bytes:
    return _len(field, value.encode()) if value else b""


def _any_value(value: Any) -> bytes:
    """An AnyValue message's body."""
    if value is None:
        return b""
    if isinstance(value, str):
        return _len(1, value.encode())
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _len(7, value)
    if isinstance(value, Sequence):
        return _len(5, b"".join(_len(1, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _len(6, b"".join(_len(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid attribute type {type(value).__name__}")


_PAIRS: dict[tuple[str, str], bytes] = {}  # encoded KeyValue of the string attributes seen most
_PAIRS_MAX = 4096


def _key_value(key: str, value: Any) -> bytes:
    if type(value) is str:
        cached = _PAIRS.get((key, value))
        if cached is not None:
            return cached
        encoded = _len(1, key.encode()) + _len(2, _len(1, value.encode()))
        if len(_PAIRS) < _PAIRS_MAX:
            _PAIRS[(key, value)] = encoded
        return encoded
    return _len(1, key.encode()) + _len(2, _any_value(value))


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        try:
            parts.append(_len(field, _key_value(key, value)))
        except TypeError:
            log.exception("span attribute not encoded", extra={"attribute": key})
    return b"".join(parts)


def _uint(field: int, value: int | None) -> bytes:
    return _tag(field, 0) + _varint(value) if value else b""


def _trace_state(field: int, state: Any) -> bytes:
    return _str(field, ",".join(f"{k}={v}" for k, v in state.items())) if state else b""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    out = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _trace_state(3, context.trace_state),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        _str(5, span.name),
        b"\x30" + _varint(_KIND[span.kind]),
        b"\x39" + _FIXED64.pack(span.start_time or 0),
        b"\x41" + _FIXED64.pack(span.end_time or 0),
        _attributes(9, span.attributes),
        _uint(10, span.dropped_attributes),
    ]
    for event in span.events:
        body = b"\x09" + _FIXED64.pack(event.timestamp) + _str(2, event.name)
        body += _attributes(3, event.attributes) + _uint(4, event.dropped_attributes)
        out.append(_len(11, body))
    out.append(_uint(12, span.dropped_events))
    for link in span.links:
        linked = link.context
        body = b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08" + linked.span_id.to_bytes(8, "big")
        body += _attributes(4, link.attributes)  # no trace_state: the SDK's encoder leaves it out
        body += _uint(5, link.dropped_attributes)
        body += b"\x35" + _FIXED32.pack(_HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0))
        out.append(_len(13, body))
    out.append(_uint(14, span.dropped_links))
    status = span.status
    if status.description or status.status_code.value:
        out.append(_len(15, _str(2, status.description) + _uint(3, status.status_code.value)))
    else:
        out.append(b"\x7a\x00")  # an unset status: an empty Status message
    out.append(b"\x85\x01" + _FIXED32.pack(flags))
    return b"".join(out)


# (resource, instrumentation scope) of the encoded spans, by number: an encoded span waiting for its export
# is a tuple of that number and its bytes, which the garbage collector stops tracking (no containers in it).
# Looked up by the objects' identity first (a process has a handful of each, alive as long as it runs and kept
# alive by _ORIGIN_LIST, so an id is never reused): hashing a Resource serializes its attributes every time.
_ORIGINS: dict[tuple[Any, Any], int] = {}
_ORIGIN_IDS: dict[tuple[int, int], int] = {}
_ORIGIN_LIST: list[tuple[Any, Any]] = []

EncodedSpan = tuple[int, bytes]


def _origin(resource: Any, scope: Any) -> int:
    key = (id(resource), id(scope))
    number = _ORIGIN_IDS.get(key)
    if number is None:
        origin = (resource, scope)
        number = _ORIGINS.get(origin)
        if number is None:
            number = _ORIGINS[origin] = len(_ORIGIN_LIST)
        _ORIGIN_LIST.append(origin)  # keeps these very objects alive, so their ids stay theirs
        _ORIGIN_IDS[key] = number
    return number


def encode_span(span: ReadableSpan) -> EncodedSpan:
    """One span's ``spans`` field of its ScopeSpans, and where it came from, for `encode_request` later."""
    return _origin(span.resource, span.instrumentation_scope or None), _len(2, _span(span))


def encode_request(spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
    """The serialized ExportTraceServiceRequest of `spans` (finished or already encoded), grouped by resource
    and instrumentation scope."""
    grouped: defaultdict[Any, defaultdict[Any, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for span in spans:
        number, body = span if isinstance(span, tuple) else encode_span(span)
        resource, scope = _ORIGIN_LIST[number]
        grouped[resource][scope].append(body)
    out = []
    for resource, scopes in grouped.items():
        body = _len(1, _attributes(1, resource.attributes))
        for scope, encoded in scopes.items():
            described = b"" if scope is None else _str(1, scope.name) + _str(2, scope.version)
            scope_spans = _len(1, described + (_attributes(3, scope.attributes) if scope is not None else b""))
            scope_spans += b"".join(encoded) + _str(3, scope.schema_url if scope is not None else None)
            body += _len(2, scope_spans)
        body += _str(3, resource.schema_url)
        out.append(_len(1, body))
    return b"".join(out)


# PINNED SDK INTERNALS. The two classes below use private attributes of the OpenTelemetry SDK:
# BatchSpanProcessor._batch_processor (its shared BatchProcessor, whose emit() queues an item for the export
# thread) and OTLPSpanExporter._client / ._shutdown (the _OTLPHTTPClient whose export(bytes) POSTs a serialized
# body and answers a result with .success). They are written against the versions pinned in constraints.txt:
# opentelemetry-sdk==1.45.1, opentelemetry-exporter-otlp-proto-http==1.45.1,
# opentelemetry-exporter-otlp-common==0.66b1 and opentelemetry-exporter-http-transport==0.66b1.
# tests/unit/servicekit/test_tracing_sdk_shape.py fails if an upgrade moves or reshapes any of them; when it
# does, adapt these classes (or fall back to the SDK's own processor and exporter) before the upgrade lands.


class EncodingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch span processor (queue, export thread, OTEL_BSP_* settings), except that a span is
    encoded as it ends and only its bytes wait for the export, for a LeanOTLPSpanExporter: a finished span
    is about a dozen objects the garbage collector would otherwise track, and promote to its oldest
    generation while they wait (seconds), which made full collections more frequent."""

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        self._batch_processor.emit(encode_span(span))  # type: ignore[arg-type]

    def emit_encoded(self, encoded: EncodedSpan) -> None:
        """Queue a span already encoded (servicekit.tracing_lean's spans, which bypass on_end)."""
        self._batch_processor.emit(encoded)  # type: ignore[arg-type]


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, serializing with `encode_request` (see PINNED SDK INTERNALS)."""

    def export(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            body = encode_request(spans)
        except Exception:
            log.exception("span batch not encoded")
            return SpanExportResult.FAILURE
        result = self._client.export(body)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
