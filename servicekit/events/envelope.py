"""CloudEvents 1.0 structured-mode JSON envelope.

Hand-written on pydantic because it sits on the hot path of every relay and consumer; conformance
with the CloudEvents SDK is checked by a unit test.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"


class EventData(BaseModel):
    """Base of every event contract. Unknown fields are ignored so producers can add fields."""

    model_config = ConfigDict(extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def subject(self) -> str:
        """The Kafka key and CloudEvents subject: the customer id, so one customer's events stay ordered."""
        return str(self.customer_id)  # type: ignore[attr-defined]


class CloudEvent(BaseModel):
    # cache_strings="keys": parsing keeps only the field names in pydantic-core's process-wide string cache,
    # not the values (ids, times, customer ids), which are nearly all new. Every cached value lives until a
    # later string takes its slot: long-lived small objects made in the middle of each batch, which keep
    # pymalloc's arenas from being given back after a lag burst (bench.batch_arenas).
    model_config = ConfigDict(extra="allow", cache_strings="keys")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    correlationid: str | None = None
    # CloudEvents distributed-tracing extension: the W3C trace context of the span that wrote the event
    # (present only while tracing is on, see servicekit.tracing).
    traceparent: str | None = None
    tracestate: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def wrap(
        cls,
        data: EventData,
        *,
        source: str,
        correlation_id: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> CloudEvent:
        """The envelope of `data`; `trace`: the writer's {"traceparent", "tracestate"} (servicekit.tracing)."""
        return cls(
            source=source,
            type=data.event_type,
            subject=data.subject(),
            dataschema=f"urn:crm:event:{data.event_type}:v{data.schema_version}",
            correlationid=correlation_id,
            traceparent=trace.get("traceparent") if trace else None,
            tracestate=trace.get("tracestate") if trace else None,
            data=data.model_dump(mode="json"),
        )

    def trace_context(self) -> dict[str, str | None]:
        """The distributed-tracing extension attributes, for servicekit.tracing."""
        return {"traceparent": self.traceparent, "tracestate": self.tracestate}

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        return cls.model_validate_json(raw)


D = TypeVar("D", bound=EventData)


@dataclass(frozen=True, slots=True)
class Received(Generic[D]):
    """An event as a handler sees it: the envelope plus its validated contract."""

    envelope: CloudEvent
    data: D

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def time(self) -> datetime:
        return self.envelope.time
