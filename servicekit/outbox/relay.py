"""The outbox relay: publishes committed outbox rows to Kafka in id order and marks them published.

Woken by the in-process commit hook and by PostgreSQL NOTIFY; polling is only the fallback. A crash
between commit and publish leaves rows unpublished, so the next relay run sends them (at least once;
consumers de-duplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, func, select, update

from servicekit import metrics
from servicekit.db import Database
from servicekit.kafka import make_producer
from servicekit.outbox.writer import NOTIFY_CHANNEL
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX

log = logging.getLogger("servicekit.relay")

FAULT_EXIT_BEFORE_PUBLISH = "exit_before_publish"
_HOUSEKEEPING_EVERY_S = 5.0


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
        database.on_outbox_commit(self._wake.set)

    async def run(self) -> None:
        backoff = 0.2
        try:
            while True:
                try:
                    await self._ensure_listener()
                    producer = await self._ensure_producer()
                    published = await self.publish_batch(producer)
                    await self._housekeeping()
                    backoff = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("outbox relay error, retrying", extra={"error": repr(exc), "retry_in_s": backoff})
                    await self._drop_producer()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if published < self.settings.relay_batch_size:
                    await self._wait()
        finally:
            await self._drop_producer()
            await self._drop_listener()

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        # Autocommit: one round trip, and no transaction stays open while we talk to Kafka.
        async with self.database.autocommit() as conn:
            rows = (
                await conn.execute(
                    select(
                        OUTBOX.c.id,
                        OUTBOX.c.topic,
                        OUTBOX.c.key,
                        OUTBOX.c.payload,
                        OUTBOX.c.headers,
                        OUTBOX.c.created_at,
                    )
                    .where(OUTBOX.c.published_at.is_(None))
                    .order_by(OUTBOX.c.id)
                    .limit(self.settings.relay_batch_size)
                )
            ).all()
        if not rows:
            return 0
        if self.settings.platform.fault == FAULT_EXIT_BEFORE_PUBLISH:
            log.error("fault injection: exiting between commit and publish", extra={"rows": len(rows)})
            os._exit(70)

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
        if published_ids:
            async with self.database.autocommit() as conn:  # a single UPDATE is atomic by itself
                await conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(published_ids)).values(published_at=now))
            metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(published_ids))
            for row in rows[: len(published_ids)]:
                created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                metrics.OUTBOX_DELAY.labels(self.service).observe(max((now - created).total_seconds(), 0.0))
        if len(published_ids) < len(rows):
            raise RuntimeError(f"{len(rows) - len(published_ids)} outbox rows not published")
        return len(published_ids)

    async def backlog(self) -> int:
        async with self.database.sessions() as session:
            return (await session.execute(select(func.count()).where(OUTBOX.c.published_at.is_(None)))).scalar_one()

    async def _housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping < _HOUSEKEEPING_EVERY_S:
            return
        self._last_housekeeping = time.monotonic()
        metrics.OUTBOX_BACKLOG.labels(self.service).set(await self.backlog())
        cutoff = datetime.now(UTC) - timedelta(hours=self.settings.outbox_retention_hours)
        async with self.database.transaction() as session:
            await session.execute(delete(OUTBOX).where(OUTBOX.c.published_at < cutoff))

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_interval_s)
        self._wake.clear()

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
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception as exc:  # polling still works without it
            log.warning("outbox LISTEN unavailable, polling", extra={"error": repr(exc)})
            self._listener = None

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)
