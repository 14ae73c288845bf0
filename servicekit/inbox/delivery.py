"""What a consumer receives: one Kafka message decoded as far as it could be, and why it may be dead-lettered.

Decoding reads the CloudEvents `ce_type` header first, so another consumer's event on a shared topic is
recognised without parsing its body; an envelope or contract that does not parse becomes a Delivery with
an error (and a fixed reason for the metric label) that the consumer dead-letters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from aiokafka import ConsumerRecord

from contracts.registry import REGISTRY, UnknownEventType
from servicekit.events.envelope import CloudEvent, Received
from servicekit.unit_of_work import UnitOfWork

# A handler applies one event inside the batch's unit of work (its transaction and typed batch state).
Handler = Callable[[UnitOfWork, Received[Any]], Awaitable[None]]
Handlers = Mapping[str, Handler]
# Called with a batch's decoded events before they are applied, in the same unit of work: lets a service
# load (and lock) the rows the whole batch touches in a few queries instead of a few per event, and keep
# them in its batch state for the handlers.
BatchHook = Callable[[UnitOfWork, Sequence[Received[Any]]], Awaitable[None]]


def batch_customer_ids(events: Sequence[Received[Any]]) -> set[str]:
    """The customers a batch's events are about (for a BatchHook that loads their rows in one query)."""
    return {i for e in events if isinstance(i := getattr(e.data, "customer_id", None), str)}


HANDLED = "handled"
DEAD_LETTERED = "dead_lettered"

# Why a message was dead-lettered, as the crm_events_dead_lettered_total `reason` label: a fixed set, so
# the free-text error (which can quote data) never becomes a metric label.
NOT_AN_ENVELOPE = "not_an_envelope"
UNKNOWN_TYPE = "unknown_type"
CONTRACT = "contract_mismatch"
HANDLER_FAILED = "handler_failed"
POISON = "poison"
DLQ_REASONS = (NOT_AN_ENVELOPE, UNKNOWN_TYPE, CONTRACT, HANDLER_FAILED, POISON)


class PoisonEvent(Exception):
    """A handler's verdict that this event can never be applied; it is dead-lettered without retries."""


@dataclass(slots=True)
class Delivery:
    """One Kafka message, decoded as far as it could be."""

    record: ConsumerRecord
    event: Received[Any] | None = None
    error: str | None = None
    reason: str = HANDLER_FAILED  # one of DLQ_REASONS, meaningful once `error` is set
    # Another consumer's event on a shared topic: nothing to apply, nothing to remember.
    ignored: bool = False
    # The decoded event was let go once its handler ran (release()); decode(record) gives it again.
    released: bool = False

    def release(self) -> None:
        """Let go of the decoded event (envelope and contract model) once nothing in the batch needs it.
        A released delivery is not applied again as it stands: decode(record) gives its event (and id) back."""
        if self.event is not None:
            self.event = None
            self.released = True

    @property
    def inbox_id(self) -> str:
        # A message too broken to carry an id is remembered by its position instead.
        if self.event is not None:
            return self.event.id
        return f"{self.record.topic}/{self.record.partition}/{self.record.offset}"


def decode(record: ConsumerRecord, handlers: Mapping[str, Any]) -> Delivery:
    """The record as a Delivery for a consumer with these handlers (by event type)."""
    # The ce_type header (CloudEvents Kafka binding) names another consumer's event without parsing the
    # body: most events on a shared topic are for someone else (every interaction.recorded, for retention).
    declared = _declared_type(record)
    if declared is not None and declared not in handlers:
        return Delivery(record, ignored=True)
    try:
        envelope = CloudEvent.from_json(record.value or b"")
    except (pydantic.ValidationError, ValueError) as exc:
        return Delivery(record, error=f"not a CloudEvents JSON envelope: {short(exc)}", reason=NOT_AN_ENVELOPE)
    if envelope.type not in handlers:
        return Delivery(record, ignored=True)
    try:
        return Delivery(record, event=REGISTRY.parse(envelope))
    except UnknownEventType:
        return Delivery(record, error=f"no contract for event type {envelope.type!r}", reason=UNKNOWN_TYPE)
    except pydantic.ValidationError as exc:
        error = f"{envelope.type} data does not match its contract: {short(exc)}"
        return Delivery(record, error=error, reason=CONTRACT)


def _declared_type(record: ConsumerRecord) -> str | None:
    for key, value in record.headers or ():
        if key == "ce_type":
            return bytes(value).decode(errors="replace")
    return None


def short(exc: BaseException) -> str:
    """An exception's text on one line, at most 1,000 characters (for a log or a dead letter's reason)."""
    text = str(exc).replace("\n", " ")
    return text[:1000]
