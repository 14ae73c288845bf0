"""A lean tracer for the platform's own spans (server, outbox publish, handle, webhook deliver).

The SDK's tracer makes each span a thread-safe recording object (a lock, attribute validation and limits,
a processor chain) that the encoding processor turns into bytes as it ends; on the platform's small,
single-threaded spans that machinery was most of what tracing cost per span. `LeanTracer` implements
OpenTelemetry's tracer API for those spans with the SDK's own parts where they decide something (its id
generator, the sampling rule of ``ParentBased(TraceIdRatioBased(ratio))``, its resource and instrumentation
scope, its batch span processor and OTLP exporter), and a `LeanSpan` that keeps its fields plainly and, as
it ends, is encoded (servicekit.tracing_wire) and queued for the processor's export. The spans of the
instrumentation packages (httpx, aiohttp, SQLAlchemy) still come from the SDK's tracer provider and leave
through the same processor; both kinds nest, as each reads its parent from the OpenTelemetry context.

A LeanSpan is used by one thread at a time (an asyncio task's), and its attributes are the platform's own
(str, bool, int, float and sequences of them), so it keeps them as given, without the SDK's validation.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from servicekit.tracing_wire import EncodingBatchSpanProcessor, encode_span

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_NO_STATE = TraceState()
_current_span = trace.get_current_span


class LeanSpan(trace.Span):
    """A recording span of `LeanTracer`; read by servicekit.tracing_wire as it reads the SDK's ReadableSpan."""

    dropped_attributes = 0
    dropped_events = 0
    dropped_links = 0

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes: dict[str, types.AnyValue] = dict(attributes) if attributes else {}
        self.events: list[Event] = []
        self.links: tuple[Link, ...] = ()
        self.status = _UNSET
        self.resource = tracer.resource
        self.instrumentation_scope = tracer.instrumentation_scope
        self._emit = tracer.processor.emit_encoded
        self.start_time = time.time_ns()
        self.end_time: int | None = None

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        self._emit(encode_span(self))  # type: ignore[arg-type]  # the fields encode_span reads, as ReadableSpan

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time is None:
            self.events.append(Event(name, attributes, timestamp or time.time_ns()))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's span: OK is final, UNSET is ignored."""
        new = status if isinstance(status, Status) else Status(status, description)
        if self.end_time is None and self.status.status_code is not StatusCode.OK and new.is_unset is False:
            self.status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with the attributes the SDK's span gives it."""
        module, qualname = type(exception).__module__, type(exception).__qualname__
        described: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        described.update(attributes or {})
        self.add_event("exception", described, timestamp)


class LeanTracer(trace.Tracer):
    """OpenTelemetry's tracer API, making `LeanSpan`s sampled as ``ParentBased(TraceIdRatioBased(ratio))``
    (a child follows its parent's decision; a root is kept when its trace id falls under the ratio's bound)
    and exported through `processor`."""

    def __init__(
        self,
        *,
        resource: Resource,
        scope: InstrumentationScope,
        id_generator: IdGenerator,
        ratio: float,
        processor: EncodingBatchSpanProcessor,
    ) -> None:
        self.resource = resource
        self.instrumentation_scope = scope
        self.processor = processor
        self._trace_id = id_generator.generate_trace_id
        self._span_id = id_generator.generate_span_id
        self._random_ids = id_generator.is_trace_id_random()
        self._bound = TraceIdRatioBased.get_bound_for_rate(ratio)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent: SpanContext | None = _current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id, state = parent.trace_id, parent.trace_state
            sampled = parent.trace_flags.sampled
            random_ids = parent.trace_flags.random_trace_id
        else:
            parent, state = None, _NO_STATE
            trace_id = self._trace_id()
            sampled = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._bound
            random_ids = self._random_ids
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_ids:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        span_context = SpanContext(trace_id, self._span_id(), is_remote=False, trace_flags=flags, trace_state=state)
        if not sampled:
            return trace.NonRecordingSpan(span_context)
        span = LeanSpan(self, name, span_context, parent, kind, attributes)
        if start_time is not None:
            span.start_time = start_time
        if links:
            span.links = tuple(links)
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's decorator: a private kind of contextmanager
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


def lean_tracer(provider: Any, processor: EncodingBatchSpanProcessor, ratio: float, name: str) -> LeanTracer:
    """A LeanTracer sharing the SDK `provider`'s resource and id generator, exporting through `processor`."""
    return LeanTracer(
        resource=provider.resource,
        scope=InstrumentationScope(name),
        id_generator=provider.id_generator,
        ratio=ratio,
        processor=processor,
    )
