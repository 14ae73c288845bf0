"""The consumer loop every service uses.

For each poll: one transaction claims the poll's event ids in the inbox (one INSERT .. ON CONFLICT DO
NOTHING RETURNING for the whole poll: what comes back is new) and applies every new event's handler
(partition by partition, each in its order; servicekit.inbox.applier); then the polled offsets are
committed, in one request for every partition and at most every `consumer_commit_interval_s` (an offset
is only ever committed after its event's transaction). A duplicate delivery is not claimed and is skipped,
so events re-delivered after a crash or rebalance cost a row of that one statement, nothing more. Per poll
rather than per partition, because under a steady trickle each partition brings one or two events per
poll, and the fixed costs (transaction, commit flush, inbox claim, offset commit) would otherwise be paid
per event. A poll holding only event types this service does not handle opens no transaction at all.
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
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from servicekit import metrics
from servicekit.allocator import TrimPacer
from servicekit.db import Database
from servicekit.errors import is_transient
from servicekit.inbox.applier import BatchApplier
from servicekit.inbox.delivery import (
    CONTRACT,
    DEAD_LETTERED,
    DLQ_REASONS,
    HANDLED,
    HANDLER_FAILED,
    NOT_AN_ENVELOPE,
    POISON,
    UNKNOWN_TYPE,
    BatchHook,
    Delivery,
    Handler,
    Handlers,
    PoisonEvent,
    batch_customer_ids,
)
from servicekit.kafka import make_consumer, set_idle_fetch
from servicekit.settings import ServiceSettings

__all__ = [
    "CONTRACT",
    "DEAD_LETTERED",
    "DLQ_REASONS",
    "HANDLED",
    "HANDLER_FAILED",
    "NOT_AN_ENVELOPE",
    "POISON",
    "UNKNOWN_TYPE",
    "BatchHook",
    "Delivery",
    "EventConsumer",
    "Handler",
    "Handlers",
    "PoisonEvent",
    "batch_customer_ids",
    "is_transient",
]

log = logging.getLogger("servicekit.consumer")


class EventConsumer(BatchApplier):
    """A service's consumer group member: polls its topics and applies each poll as one batch."""

    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        handlers: Handlers,
        topics: Sequence[str],
        before_batch: BatchHook | None = None,
    ) -> None:
        super().__init__(database, settings, handlers, before_batch)
        self.topics = list(topics)
        self.connected = False
        self._consumer: AIOKafkaConsumer | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # applied, offset not yet committed
        # time.monotonic() of the last offset commit; -inf makes the first one due at once, however
        # recently the host booted (monotonic time starts near zero at boot)
        self._committed_at = float("-inf")
        self._trim = TrimPacer(settings.consumer_malloc_trim_interval_s)

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
        kafka = self.settings.consumer_kafka()
        consumer = make_consumer(
            kafka,
            *self.topics,
            group_id=self.group,
            client_id=f"{self.service}-consumer",
            max_records=self.settings.consumer_batch_size,
        )
        self._consumer = consumer
        await consumer.start()
        self.connected = True
        log.info("consumer started", extra={"topics": self.topics, "group": self.group})
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
                batches = {}  # the poll's records are done with: not kept through the next fetch's wait
                self._trim.after_batch()  # what the batch freed goes back to the OS (servicekit.allocator)
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
