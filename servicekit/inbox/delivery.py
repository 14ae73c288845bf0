"""What a consumer receives: one Kafka message decoded as far as it could be, and why it may be dead-lettered.

Decoding reads the CloudEvents `ce_type` header first, so another consumer's event on a shared topic is
recognised without parsing its body; an envelope or contract that does not parse becomes a Delivery with
an error (and a fixed reason for the metric label) that the consumer dead-letters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.registry import REGISTRY, UnknownEventType
from servicekit.events.envelope import CloudEvent, Received
from servicekit.unit_of_work import UnitOfWork

# A handler applies one event inside the batch's unit of work (its transaction and typed batch state).
Handler = Callable[[UnitOfWork, Received[Any]], Awaitable[None]]
Handlers = Mapping[str, Handler]
PlainHook = Callable[[UnitOfWork, Sequence[Received[Any]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Claim:
    """A batch's inbox claim, for a ClaimingHook that sends it inside its own first statement.

    `statement` is INSERT INTO inbox .. ON CONFLICT DO NOTHING RETURNING event_id with `params` bound (on
    PostgreSQL arrays named with CLAIM_PREFIX, so it can ride as a CTE beside another insert from arrays);
    `given` are ids claimed without a row (an event no handler here takes: nothing to remember)."""

    statement: Any
    params: Any
    given: frozenset[str]
    rows: int

    def claimed(self, returned: Iterable[str]) -> set[str]:
        """The batch's claimed ids, from the event ids the statement returned."""
        return {*self.given, *returned}

    async def run(self, session: AsyncSession) -> set[str]:
        """The claim as a statement of its own."""
        if not self.rows:
            return set(self.given)
        return self.claimed((await session.execute(self.statement, self.params)).scalars())


CLAIM_PREFIX = "inbox_"  # the claim's bound arrays on PostgreSQL


@dataclass(frozen=True, slots=True)
class ClaimingHook:
    """A before-batch hook that runs the batch's inbox claim itself, so the claim costs no round trip of its own.

    `claim_and_load(uow, events, claim)` gets every event of the batch that decoded (duplicates and events
    handled before included) and must: send `claim` before anything that may wait on a lock (within its first
    statement, whose modifications run before the rest of it), so that a consumer applying the same events
    waits there, as for a claim of its own; load only for the events whose id the claim took (each once); and
    return `claim.claimed(ids the statement returned)`, or what `claim.run` returned.
    """

    claim_and_load: Callable[[UnitOfWork, Sequence[Received[Any]], Claim], Awaitable[set[str]]]


# Called with a batch's events before they are applied (a plain hook: those the inbox claimed), in the same
# unit of work: lets a service load (and lock) the rows the whole batch touches in a few queries instead of
# a few per event, and keep them in its batch state for the handlers.
BatchHook = PlainHook | ClaimingHook


def claimed_events(events: Sequence[Received[Any]], claimed: set[str]) -> list[Received[Any]]:
    """The events a batch applies of those a ClaimingHook got: claimed, the first copy of each."""
    left = set(claimed)
    found = []
    for event in events:
        if event.id in left:
            left.discard(event.id)
            found.append(event)
    return found


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
