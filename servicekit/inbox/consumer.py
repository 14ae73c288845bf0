"""The consumer loop every service uses.

For each poll: one transaction claims the poll's event ids in the inbox (one INSERT .. ON CONFLICT DO
NOTHING RETURNING for the whole poll: what comes back is new) and applies every new event's handler
(partition by partition, each in its order); then the polled offsets are committed, in one request for
every partition and at most every `consumer_commit_interval_s` (an offset is only ever committed after
its event's transaction). A duplicate delivery is not claimed and is skipped, so events re-delivered
after a crash or rebalance cost a row of that one statement, nothing more. Per poll rather than per
partition, because under a steady trickle each partition brings one or two events per poll, and the
fixed costs (transaction, commit flush, inbox claim, offset commit) would otherwise be paid per event.
A poll holding only event types this service does not handle opens no transaction at all.
If the batch fails, its messages are retried one by one; a message that still fails after bounded
attempts is written to the dead-letter topic (through the outbox, in the same transaction as its inbox
row) and the consumer moves on. Errors that mean "the database is unreachable" are retried without
limit instead, so an outage never dead-letters good events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.registry import REGISTRY, UnknownEventType
from contracts.topics import dead_letter
from servicekit import metrics, tracing
from servicekit.context import correlation_id
from servicekit.db import Database
from servicekit.errors import is_transient
from servicekit.events.envelope import CloudEvent, Received
from servicekit.kafka import make_consumer, set_idle_fetch
from servicekit.outbox.writer import enqueue_raw
from servicekit.settings import ServiceSettings
from servicekit.tables import INBOX
from servicekit.unit_of_work import UnitOfWork, unit_of_work

log = logging.getLogger("servicekit.consumer")

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

    @property
    def inbox_id(self) -> str:
        # A message too broken to carry an id is remembered by its position instead.
        if self.event is not None:
            return self.event.id
        return f"{self.record.topic}/{self.record.partition}/{self.record.offset}"


class EventConsumer:
    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        handlers: Handlers,
        topics: Sequence[str],
        before_batch: BatchHook | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.handlers = dict(handlers)
        self.before_batch = before_batch
        self.topics = list(topics)
        self.service = settings.name
        self.group = settings.consumer_group
        self.connected = False
        self._consumer: AIOKafkaConsumer | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # applied, offset not yet committed
        # time.monotonic() of the last offset commit; -inf makes the first one due at once, however
        # recently the host booted (monotonic time starts near zero at boot)
        self._committed_at = float("-inf")
        insert = postgresql.insert if database.is_postgres else sqlite.insert
        self._claim_statement = (
            insert(INBOX)
            .on_conflict_do_nothing(index_elements=[INBOX.c.consumer, INBOX.c.event_id])
            .returning(INBOX.c.event_id)
        )

    # ---- decoding -------------------------------------------------------------------------------

    def decode(self, record: ConsumerRecord) -> Delivery:
        # The ce_type header (CloudEvents Kafka binding) names another consumer's event without parsing the
        # body: most events on a shared topic are for someone else (every interaction.recorded, for retention).
        declared = _declared_type(record)
        if declared is not None and declared not in self.handlers:
            return Delivery(record, ignored=True)
        try:
            envelope = CloudEvent.from_json(record.value or b"")
        except (pydantic.ValidationError, ValueError) as exc:
            return Delivery(record, error=f"not a CloudEvents JSON envelope: {_short(exc)}", reason=NOT_AN_ENVELOPE)
        if envelope.type not in self.handlers:
            return Delivery(record, ignored=True)
        try:
            return Delivery(record, event=REGISTRY.parse(envelope))
        except UnknownEventType:
            return Delivery(record, error=f"no contract for event type {envelope.type!r}", reason=UNKNOWN_TYPE)
        except pydantic.ValidationError as exc:
            error = f"{envelope.type} data does not match its contract: {_short(exc)}"
            return Delivery(record, error=error, reason=CONTRACT)

    # ---- applying ---------------------------------------------------------------------------------

    async def apply_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Apply a partition's batch in one transaction, or fall back to one message at a time."""
        deliveries = [d for d in deliveries if not d.ignored]
        if not deliveries:
            return
        try:
            async with unit_of_work(self.database) as uow:
                # One statement claims every new event id (its inbox row, written now, rolled back with the
                # batch if it fails): what it does not claim was handled before, or comes twice in the batch.
                claimed = await self._claim(uow.session, deliveries)
                applied = []
                for delivery in deliveries:
                    if delivery.inbox_id in claimed:
                        claimed.discard(delivery.inbox_id)  # a second copy in the batch is a duplicate
                        applied.append(delivery)
                if self.before_batch is not None:
                    events = [d.event for d in applied if d.event is not None and d.event.data is not None]
                    if events:
                        await self.before_batch(uow, events)
                for delivery in applied:
                    await self._apply(uow, delivery)
            # Counted only once committed, and only what was applied: skipped duplicates are not "handled"
            # (the same as apply_one); a failed batch counts nothing here, its retry one by one does.
            if duplicates := len(deliveries) - len(applied):
                metrics.EVENTS_DUPLICATE.labels(self.service).inc(duplicates)
            self._count_handled(applied)
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            log.info("batch failed, retrying message by message", extra={"error": repr(exc)})
        for delivery in deliveries:
            await self.apply_one(delivery)

    async def apply_one(self, delivery: Delivery) -> None:
        attempts = 0
        while True:
            attempts += 1
            try:
                async with unit_of_work(self.database) as uow:
                    if not await self._claim(uow.session, [delivery]):
                        metrics.EVENTS_DUPLICATE.labels(self.service).inc()
                        return
                    await self._apply(uow, delivery)
                self._count_handled([delivery])
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                event_type = delivery.event.envelope.type if delivery.event else "unknown"
                metrics.EVENTS_FAILED.labels(self.service, event_type).inc()
                if isinstance(exc, PoisonEvent) or attempts >= self.settings.consumer_max_attempts:
                    delivery.error = f"handler failed after {attempts} attempt(s): {_short(exc)}"
                    delivery.reason = POISON if isinstance(exc, PoisonEvent) else HANDLER_FAILED
                    log.warning("handler failed", extra={"event_type": event_type, "error": repr(exc)})
                    break
                await asyncio.sleep(self.settings.consumer_retry_backoff_s * attempts)
        async with self.database.transaction() as session:
            if await self._claim(session, [delivery]):
                await self._dead_letter(session, delivery)

    async def _apply(self, uow: UnitOfWork, delivery: Delivery) -> None:
        """Apply one delivery (its inbox row is claimed already, in the same transaction)."""
        if delivery.error is not None:
            await self._dead_letter(uow.session, delivery)
            return
        event = delivery.event
        assert event is not None
        handler = self.handlers.get(event.envelope.type)
        if handler is None:
            return  # another consumer's event on a shared topic
        record = delivery.record
        with tracing.handle_span(
            event.envelope.type,
            record.headers,
            envelope_context=event.envelope.trace_context(),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            group=self.group,
            published_ms=record.timestamp,
        ):
            # While tracing is on the correlation id is the trace id (the one the event's writer logged).
            token = correlation_id.set(tracing.current_trace_id() or event.envelope.correlationid)
            try:
                await handler(uow, event)
            finally:
                correlation_id.reset(token)

    async def _dead_letter(self, session: AsyncSession, delivery: Delivery) -> None:
        record = delivery.record
        reason = delivery.error or "unknown error"
        headers = [(k, v.decode(errors="replace")) for k, v in (record.headers or ())]
        headers += [
            ("dlq.reason", reason[:2000]),
            ("dlq.consumer", self.group),
            ("dlq.origin", f"{record.topic}/{record.partition}/{record.offset}"),
        ]
        key = record.key.decode(errors="replace") if record.key else None
        await enqueue_raw(
            session, topic=dead_letter(record.topic), key=key, payload=record.value or b"", headers=headers
        )
        metrics.DEAD_LETTERED.labels(self.service, record.topic, delivery.reason).inc()
        log.warning("message dead-lettered", extra={"origin": headers[-1][1], "reason": reason[:500]})

    async def _claim(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> set[str]:
        """Write the inbox rows of deliveries not handled before, in one statement; the ids it wrote.

        INSERT .. ON CONFLICT DO NOTHING RETURNING: an id handled before (or being handled by a consumer
        that still holds it after a rebalance: the insert waits for that transaction) comes back absent,
        with no look-up of its own. The rows belong to the caller's transaction: if applying fails, the
        rollback takes them back. An event without a handler here is not kept (nothing was done with it).
        """
        rows: dict[str, dict[str, Any]] = {}
        claimed: set[str] = set()
        now = datetime.now(UTC)
        for delivery in deliveries:
            event = delivery.event
            if delivery.error is None and (event is None or event.envelope.type not in self.handlers):
                claimed.add(delivery.inbox_id)
                continue
            rows.setdefault(
                delivery.inbox_id,
                {
                    "consumer": self.group,
                    "event_id": delivery.inbox_id,
                    "event_type": event.envelope.type if event else None,
                    "outcome": HANDLED if delivery.error is None else DEAD_LETTERED,
                    "handled_at": now,
                },
            )
        if rows:
            # Sorted: two transactions claiming overlapping ids take their index entries in one order.
            found = await session.execute(self._claim_statement, [rows[key] for key in sorted(rows)])
            claimed.update(found.scalars())
        return claimed

    def _count_handled(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.event is not None and delivery.error is None and delivery.event.data is not None:
                metrics.EVENTS_HANDLED.labels(self.service, delivery.event.envelope.type).inc()

    # ---- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer error, reconnecting", extra={"error": repr(exc), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await self._stop()

    async def _consume(self) -> None:
        consumer = make_consumer(
            self.settings.kafka,
            *self.topics,
            group_id=self.group,
            client_id=f"{self.service}-consumer",
            max_records=self.settings.consumer_batch_size,
        )
        self._consumer = consumer
        await consumer.start()
        self.connected = True
        log.info("consumer started", extra={"topics": self.topics, "group": self.group})
        kafka = self.settings.kafka
        last_records_at, idle = time.monotonic(), False
        while True:
            # Wake no later than pending offsets fall due, so a lull does not leave them uncommitted.
            wait_s = min(max(self._commit_due_in(), 0.0), 0.5) if self._uncommitted else 0.5
            batches = await consumer.getmany(
                timeout_ms=int(wait_s * 1000), max_records=self.settings.consumer_batch_size
            )
            if batches:
                last_records_at = time.monotonic()
                if idle:
                    idle = False
                    set_idle_fetch(consumer, kafka, idle=False)
                await self._handle_poll(consumer, batches)
                continue
            if self._uncommitted and self._commit_due_in() <= 0:
                await self._commit(consumer)
            lull_s = time.monotonic() - last_records_at
            if not idle and kafka.consumer_idle_after_s and lull_s >= kafka.consumer_idle_after_s:
                idle = True
                set_idle_fetch(consumer, kafka, idle=True)

    async def _handle_poll(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, Sequence[ConsumerRecord]]
    ) -> None:
        """Apply one poll's records (each partition's in order) in one transaction, then commit all their offsets."""
        batches = {tp: records for tp, records in batches.items() if records}
        if not batches:
            return
        deliveries = [self.decode(r) for records in batches.values() for r in records]
        backoff = 0.2
        while True:
            try:
                await self.apply_batch(deliveries)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("database unavailable, retrying batch", extra={"error": repr(exc), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self._uncommitted.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
        if self._commit_due_in() <= 0:
            await self._commit(consumer)
        for tp, records in batches.items():
            with contextlib.suppress(KafkaError, AssertionError):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag = max(highwater - (records[-1].offset + 1), 0)
                    metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(lag)

    def _commit_due_in(self) -> float:
        """Seconds until uncommitted offsets are due (<= 0: now)."""
        return self._committed_at + self.settings.consumer_commit_interval_s - time.monotonic()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit every applied offset not committed yet, in one request."""
        offsets, self._uncommitted = self._uncommitted, {}
        self._committed_at = time.monotonic()
        if not offsets:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took a partition away; its new owner re-reads and the inbox skips what we did.
            log.info("offset commit skipped after rebalance", extra={"error": repr(exc)})

    async def _stop(self) -> None:
        self.connected = False
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._commit(consumer), 5)  # a clean stop re-delivers nothing
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)
        self._uncommitted = {}


def _declared_type(record: ConsumerRecord) -> str | None:
    for key, value in record.headers or ():
        if key == "ce_type":
            return bytes(value).decode(errors="replace")
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text[:1000]
