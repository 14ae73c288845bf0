"""Applying a poll's deliveries: one transaction per batch, the inbox claim, the one-by-one fallback, the DLQ.

A batch's event ids are claimed in the inbox with one INSERT .. ON CONFLICT DO NOTHING RETURNING at the
start of its transaction (what comes back is new; the rest was handled before, or comes twice in the
batch), then the service's before-batch hook and every new event's handler run in the same unit of work.
If the batch fails, its messages are retried one by one; a message that still fails after bounded attempts
is written to the dead-letter topic (through the outbox, in the same transaction as its inbox row).
Errors that mean "the database is unreachable" are raised to the caller, which retries without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.topics import dead_letter
from servicekit import metrics, tracing
from servicekit.context import correlation_id
from servicekit.db import Database
from servicekit.errors import is_transient
from servicekit.events.envelope import Received
from servicekit.inbox.delivery import (
    CLAIM_PREFIX,
    DEAD_LETTERED,
    HANDLED,
    HANDLER_FAILED,
    POISON,
    BatchHook,
    Claim,
    ClaimingHook,
    Delivery,
    Handlers,
    PoisonEvent,
    decode,
    short,
)
from servicekit.outbox.writer import enqueue_raw
from servicekit.settings import ServiceSettings
from servicekit.sql import column_arrays, insert_from_arrays
from servicekit.tables import INBOX
from servicekit.unit_of_work import UnitOfWork, unit_of_work

_CLAIMED = ("consumer", "event_id", "event_type", "outcome", "handled_at")  # the columns a claim writes

log = logging.getLogger("servicekit.consumer")


class BatchApplier:
    """Applies decoded deliveries to a service's store through its handlers, idempotently (the inbox)."""

    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        handlers: Handlers,
        before_batch: BatchHook | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.handlers = dict(handlers)
        self.before_batch = before_batch
        self.service = settings.name
        self.group = settings.consumer_group
        # On PostgreSQL the rows travel as one array per column: one SQL text (one prepared statement per
        # connection) for any batch size, where a multi-row VALUES list had one per batch size.
        postgres = database.is_postgres
        insert = insert_from_arrays(INBOX, _CLAIMED, prefix=CLAIM_PREFIX) if postgres else sqlite.insert(INBOX)
        self._claim_statement = insert.on_conflict_do_nothing(
            index_elements=[INBOX.c.consumer, INBOX.c.event_id]
        ).returning(INBOX.c.event_id)

    def decode(self, record: ConsumerRecord) -> Delivery:
        return decode(record, self.handlers)

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
                # A claiming hook sends that statement inside its own first one.
                hook = self.before_batch
                if isinstance(hook, ClaimingHook) and (decoded := _decoded(deliveries)):
                    claimed = await hook.claim_and_load(uow, decoded, self._claim_of(deliveries))
                    del decoded
                else:
                    claimed = await self._claim(uow.session, deliveries)
                applied = []
                for delivery in deliveries:
                    if delivery.inbox_id in claimed:
                        claimed.discard(delivery.inbox_id)  # a second copy in the batch is a duplicate
                        applied.append(delivery)
                if hook is not None and not isinstance(hook, ClaimingHook):
                    events = _decoded(applied)
                    if events:
                        await hook(uow, events)
                    del events
                for delivery in applied:
                    await self._apply(uow, delivery)
                handled = _handled_types(applied)
                # Every handler has run: the poll's decoded envelopes and models are let go before the
                # commit's writes and round trips (the batch's largest moment), not kept through them.
                for delivery in deliveries:
                    delivery.release()
            # Counted only once committed, and only what was applied: skipped duplicates are not "handled"
            # (the same as apply_one); a failed batch counts nothing here, its retry one by one does.
            if duplicates := len(deliveries) - len(applied):
                metrics.EVENTS_DUPLICATE.labels(self.service).inc(duplicates)
            self._count(handled)
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            log.info("batch failed, retrying message by message", extra={"error": repr(exc)})
        for delivery in deliveries:
            # A commit that failed after the release: the record decodes again, to the same event.
            await self.apply_one(self.decode(delivery.record) if delivery.released else delivery)

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
                self._count(_handled_types([delivery]))
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                event_type = delivery.event.envelope.type if delivery.event else "unknown"
                metrics.EVENTS_FAILED.labels(self.service, event_type).inc()
                if isinstance(exc, PoisonEvent) or attempts >= self.settings.consumer_max_attempts:
                    delivery.error = f"handler failed after {attempts} attempt(s): {short(exc)}"
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
        return await self._claim_of(deliveries).run(session)

    def _claim_of(self, deliveries: Sequence[Delivery]) -> Claim:
        """The claim of these deliveries, bound, not sent (see _claim)."""
        rows: dict[str, dict[str, Any]] = {}
        given: set[str] = set()
        now = datetime.now(UTC)
        for delivery in deliveries:
            event = delivery.event
            if delivery.error is None and (event is None or event.envelope.type not in self.handlers):
                given.add(delivery.inbox_id)
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
        # Sorted: two transactions claiming overlapping ids take their index entries in one order.
        ordered = [rows[key] for key in sorted(rows)]
        postgres = self.database.is_postgres
        bound = column_arrays(INBOX, _CLAIMED, ordered, prefix=CLAIM_PREFIX) if postgres else ordered
        return Claim(self._claim_statement, bound, frozenset(given), len(ordered))

    def _count(self, handled: Counter[str]) -> None:
        for event_type, count in handled.items():  # one increment per type and batch, not per event
            metrics.EVENTS_HANDLED.labels(self.service, event_type).inc(count)


def _decoded(deliveries: Sequence[Delivery]) -> list[Received[Any]]:
    """The deliveries' events that decoded (a dead letter's did not)."""
    return [d.event for d in deliveries if d.event is not None and d.event.data is not None]


def _handled_types(deliveries: Sequence[Delivery]) -> Counter[str]:
    """How many of the deliveries' events were handled, by event type (dead letters are not)."""
    return Counter(
        d.event.envelope.type
        for d in deliveries
        if d.event is not None and d.error is None and d.event.data is not None
    )
