"""The outbox relay: publishes committed outbox rows to Kafka in id order and marks them published.

Woken by the in-process commit hook and by PostgreSQL NOTIFY; polling is only the fallback. A crash
between commit and publish leaves rows unpublished, so the next relay run sends them (at least once;
consumers de-duplicate by event id).

Under load the mark of a published batch rides with the read of the next one (on PostgreSQL one
statement: the UPDATE in a CTE, the read skipping the rows it marks), so a round costs one round trip to
the database instead of two. At an ordinary rate, where a round carries a few rows, the mark waits too:
it rides with the read the next commit's wake-up starts, and only a relay that has waited a whole poll
interval with nothing to read marks by itself; so a round is one statement at any rate. `published_at` is
the broker's ack time either way. A crash before a deferred mark publishes those rows again: at least
once, as above. Under load a round starts at most every relay_min_round_interval_ms, so the commits in
between go out together (one read, one produce request) instead of a round each. On PostgreSQL the relay
keeps one connection of its own in autocommit between rounds rather than taking one from the pool each time;
on a SQLite file whose connections run inline, the read and mark run on the sqlite3 connection itself
(servicekit.outbox.relay_sqlite).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from sqlalchemy import ARRAY, BigInteger, all_, any_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from servicekit import metrics, tracing
from servicekit.db import Database
from servicekit.driver import usable
from servicekit.kafka import make_producer
from servicekit.outbox.relay_sqlite import InlineRelayStatements
from servicekit.outbox.writer import NOTIFY_CHANNEL
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX

log = logging.getLogger("servicekit.relay")

FAULT_EXIT_BEFORE_PUBLISH = "exit_before_publish"
_HOUSEKEEPING_EVERY_S = 5.0
# The backlog gauge counts unpublished rows up to this many. Counting them all every round cost PostgreSQL
# 84-172 ms at a 950,000-row backlog (a migration-sized import); through the partial index, this many cost
# a few ms, and past it the gauge reads "at least this many" (docs/observability.md).
BACKLOG_COUNT_CAP = 100_000


class Producer(Protocol):
    """What the relay asks of a Kafka producer (an AIOKafkaProducer; a fake in unit tests): ``send`` queues
    a record and returns what to await for the broker's answer."""

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]: ...


class OutboxRelay:
    def __init__(self, database: Database, settings: ServiceSettings) -> None:
        self.database = database
        self.settings = settings
        self.service = settings.name
        self.connected = False
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: Any = None
        self._last_housekeeping = float("-inf")  # the first pass is due at once, whatever the uptime
        # Rows the broker acknowledged that no statement has marked yet: {"ids": [...], "acked_at": ack time}.
        self._acked: dict[str, Any] = {}
        self._round_started = float("-inf")  # time.monotonic() of the last round's read
        # PostgreSQL, while run() runs: the relay's own connection, in autocommit, kept between rounds.
        self._connection: AsyncConnection | None = None
        self._keep_connection = False
        # The metrics' children for this service, looked up once (a labels() call per row costs).
        self._round_rows = metrics.OUTBOX_ROUND_ROWS.labels(self.service)
        self._published = metrics.OUTBOX_PUBLISHED.labels(self.service)
        self._delay = metrics.OUTBOX_DELAY.labels(self.service)
        self._events: dict[str, Any] = {}
        # A SQLite file whose connections run inline: the read and mark on the sqlite3 connection itself.
        self._inline: InlineRelayStatements | None = None
        if database.is_sqlite and usable(database.engine):
            self._inline = InlineRelayStatements(database.engine, _READ, _ACKED_AT)
        database.on_outbox_commit(self._wake.set)

    async def run(self) -> None:
        backoff = 0.2
        self._keep_connection = self.database.is_postgres
        try:
            while True:
                try:
                    await self._ensure_listener()
                    # Before the producer: while Kafka is down the backlog and oldest-age gauges keep
                    # moving, so the RelayNotPublishing and OutboxOldRows alerts can see the stall.
                    await self._housekeeping()
                    producer = await self._ensure_producer()
                    published = await self.publish_batch(producer, defer_mark=True, hold_mark=True)
                    if published < self.settings.relay_batch_size and not await self._wait():
                        await self.mark_acked()  # a poll interval with nothing to read: no read to ride with
                    backoff = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("outbox relay error, retrying", extra={"error": repr(exc), "retry_in_s": backoff})
                    await self._drop_producer()
                    await self._drop_connection()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if published < self.settings.relay_batch_size:
                    await self._pace()
        finally:
            with contextlib.suppress(Exception):  # a clean stop publishes nothing twice
                await asyncio.wait_for(self.mark_acked(), 5)
            await self._drop_producer()
            self._keep_connection = False
            await self._drop_connection()
            await self._drop_listener()

    async def publish_batch(self, producer: Producer, *, defer_mark: bool = False, hold_mark: bool = False) -> int:
        """Publish one batch of unpublished rows; returns how many were published.

        defer_mark: when more rows are already waiting (a full batch, or a commit woke the relay since),
        leave the batch's mark for the next read to carry; otherwise mark at once.
        hold_mark: leave it for the next read whether or not rows are waiting (the caller marks with
        mark_acked() when no read follows soon).
        """
        self._round_started = time.monotonic()
        # This read sees every row committed so far, so the wake-ups of those commits are spent: one that
        # comes during the round is for rows the read may miss (an empty round at worst).
        self._wake.clear()
        rows = await self._mark_acked_and_read()
        if not rows:
            return 0
        if self.settings.platform.fault == FAULT_EXIT_BEFORE_PUBLISH:
            log.error("fault injection: exiting between commit and publish", extra={"rows": len(rows)})
            os._exit(70)

        if tracing.enabled():
            results = await self._send_traced(producer, rows)
        else:
            sends = [
                await producer.send(
                    row.topic,
                    value=row.payload,
                    key=row.key.encode() if row.key else None,
                    headers=[(k, v.encode()) for k, v in row.headers],
                )
                for row in rows
            ]
            results = await asyncio.gather(*sends, return_exceptions=True)
        # Mark the published prefix only, so a failed row and everything after it keep their order.
        published_ids = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("publish failed", extra={"outbox_id": row.id, "error": repr(result)})
                break
            published_ids.append(row.id)
        now = datetime.now(UTC)
        self._round_rows.observe(len(rows))
        if published_ids:
            self._acked = {"ids": published_ids, "acked_at": now}
            self._published.inc(len(published_ids))
            for row in rows[: len(published_ids)]:
                created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                self._delay.observe(max((now - created).total_seconds(), 0.0))
                self._event_counter(_event_type(row.headers)).inc()
        failed = len(rows) - len(published_ids)
        more_waiting = len(rows) == self.settings.relay_batch_size or self._wake.is_set()
        if failed or not (hold_mark or (defer_mark and more_waiting)):
            await self.mark_acked()
        if failed:
            raise RuntimeError(f"{failed} outbox rows not published")
        return len(published_ids)

    async def _send_traced(self, producer: Producer, rows: list[Any]) -> list[Any]:
        """publish_batch's sends, each in an `outbox publish` span (child of the span that wrote the row,
        carrying the outbox wait) that ends when the broker answers; the Kafka headers carry the publish
        span's context, so the consumer's span is its child."""
        sends, spans = [], []
        now = datetime.now(UTC)
        try:
            for row in rows:
                created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                wait_s = max((now - created).total_seconds(), 0.0)
                span, headers = tracing.start_publish_span(row.topic, row.headers, wait_s=wait_s)
                spans.append(span)
                sends.append(
                    await producer.send(
                        row.topic,
                        value=row.payload,
                        key=row.key.encode() if row.key else None,
                        headers=[(k, v.encode()) for k, v in headers],
                    )
                )
            results = await asyncio.gather(*sends, return_exceptions=True)
            for span, result in zip(spans, results, strict=True):
                if isinstance(result, BaseException):
                    span.record_exception(result)
            return list(results)
        finally:
            for span in spans:
                span.end()

    async def close(self) -> None:
        """For callers that drive publish_batch themselves: mark what is acknowledged, release the connection."""
        try:
            await self.mark_acked()
        finally:
            await self._drop_connection()

    def _event_counter(self, event_type: str) -> Any:
        counter = self._events.get(event_type)
        if counter is None:
            counter = self._events[event_type] = metrics.EVENTS_PUBLISHED.labels(self.service, event_type)
        return counter

    async def mark_acked(self) -> None:
        """Mark the rows the broker has acknowledged and no read has marked yet."""
        if not self._acked:
            return
        if self._inline is not None:
            await self._inline.mark(self._acked)
        else:
            async with self._autocommit() as conn:  # a single UPDATE is atomic by itself
                await conn.execute(_MARK_ANY if self.database.is_postgres else _MARK, self._acked)
        self._acked = {}

    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """Database.autocommit(), but while run() runs on PostgreSQL the relay's own connection, kept
        between rounds (a checkout from the pool and the isolation level set and reset cost more than a
        round's read). A statement that fails drops it; the next round opens another."""
        if not self._keep_connection:
            async with self.database.autocommit() as conn:
                yield conn
            return
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            connection = await self.database.engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield self._connection
        except BaseException:
            await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _mark_acked_and_read(self) -> list[Any]:
        """The next batch of unpublished rows, marking the acknowledged ones in the same round trip."""
        if self._inline is not None:
            read = await self._inline.mark_and_read(self._acked, self.settings.relay_batch_size)
            self._acked = {}
            return read
        limit = {"limit": self.settings.relay_batch_size}
        # Autocommit: no transaction stays open while we talk to Kafka.
        async with self._autocommit() as conn:
            if not self._acked:
                rows = (await conn.execute(_READ, limit)).all()
            elif self.database.is_postgres:
                rows = (await conn.execute(_MARK_AND_READ, {**self._acked, **limit})).all()
            else:  # SQLite: two statements, in the one transaction autocommit() opens there
                await conn.execute(_MARK, self._acked)
                rows = (await conn.execute(_READ, limit)).all()
        self._acked = {}
        return list(rows)

    async def backlog(self, cap: int = BACKLOG_COUNT_CAP) -> tuple[int, float]:
        """Unpublished rows, counted up to cap, and the age in seconds of the oldest (0.0 when none wait).

        Both read the partial index of unpublished rows in id order, so neither grows with the backlog:
        the oldest is the lowest id (ids are taken as rows are written, so within a commit's span of it).
        """
        waiting = select(OUTBOX.c.id).where(_UNPUBLISHED).order_by(OUTBOX.c.id).limit(cap).subquery()
        counted = select(func.count()).select_from(waiting).scalar_subquery()
        first = select(OUTBOX.c.created_at).where(_UNPUBLISHED).order_by(OUTBOX.c.id).limit(1).scalar_subquery()
        async with self.database.sessions() as session:  # one round trip
            count, oldest = (await session.execute(select(counted, first))).one()
        if oldest is None:
            return count, 0.0
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        return count, max((datetime.now(UTC) - oldest).total_seconds(), 0.0)

    async def _housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping < _HOUSEKEEPING_EVERY_S:
            return
        self._last_housekeeping = time.monotonic()
        count, oldest_age_s = await self.backlog()
        metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(oldest_age_s)
        cutoff = datetime.now(UTC) - timedelta(hours=self.settings.outbox_retention_hours)
        async with self.database.transaction() as session:
            await session.execute(delete(OUTBOX).where(OUTBOX.c.published_at < cutoff))

    async def _pace(self) -> None:
        """Start the next round no sooner than the settings' interval (relay_round_interval_ms) after the last
        one started."""
        due = self._round_started + self.settings.relay_round_interval_ms() / 1000 - time.monotonic()
        if due > 0:
            await asyncio.sleep(due)

    async def _wait(self) -> bool:
        """Wait for a wake-up (a commit here, a NOTIFY from elsewhere) or the poll interval; True if woken."""
        woken = False
        with contextlib.suppress(TimeoutError):
            woken = await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_interval_s)
        self._wake.clear()
        return woken

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self.settings.kafka, client_id=f"{self.service}-relay")
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            self.connected = True
            log.info("outbox relay connected to Kafka")
        return self._producer

    async def _drop_producer(self) -> None:
        self.connected = False
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def _ensure_listener(self) -> None:
        """LISTEN on PostgreSQL so commits in other processes wake this relay at once."""
        if not self.database.is_postgres:
            return
        if self._listener is not None and not self._listener.is_closed():
            return
        import asyncpg

        dsn = self.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            named = {"application_name": f"{self.database.application_name} listen"[:63]}
            self._listener = await asyncpg.connect(dsn, server_settings=named)
            await self._listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception as exc:  # polling still works without it
            log.warning("outbox LISTEN unavailable, polling", extra={"error": repr(exc)})
            self._listener = None

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)


def _event_type(headers: Any) -> str:
    """The row's ce_type header ("raw" for a dead-lettered original, which carries its own)."""
    found = "raw"
    for key, value in headers or ():
        if key == "dlq.reason":
            return "dead_letter"
        if key == "ce_type":
            found = value
    return found


_COLUMNS = (OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload, OUTBOX.c.headers, OUTBOX.c.created_at)
_UNPUBLISHED = OUTBOX.c.published_at.is_(None)
_READ = select(*_COLUMNS).where(_UNPUBLISHED).order_by(OUTBOX.c.id).limit(bindparam("limit"))
_ACKED_AT: BindParameter[datetime] = bindparam("acked_at")
_MARK = update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True))).values(published_at=_ACKED_AT)
# PostgreSQL: the UPDATE runs in a CTE; the read sees the snapshot from before it, so it skips those ids.
_ACKED_IDS = bindparam("ids", type_=ARRAY(BigInteger))
# The ids as one array: one SQL text (one prepared statement per connection) for any number of them,
# where an IN list had one per length.
_MARK_ANY = update(OUTBOX).where(OUTBOX.c.id == any_(_ACKED_IDS)).values(published_at=_ACKED_AT)
_MARKED = _MARK_ANY.cte("marked")
_MARK_AND_READ = (
    select(*_COLUMNS)
    .add_cte(_MARKED)
    .where(_UNPUBLISHED, OUTBOX.c.id != all_(_ACKED_IDS))
    .order_by(OUTBOX.c.id)
    .limit(bindparam("limit"))
)
