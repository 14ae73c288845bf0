"""An idle consumer long-polls the real broker, and the first event after the lull switches it back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.customer import CustomerCreated
from servicekit.db import Database
from servicekit.events import CloudEvent, Received
from servicekit.inbox import EventConsumer
from servicekit.kafka import make_producer
from servicekit.settings import KafkaSettings, ServiceSettings
from tests.e2e.conftest import KAFKA


async def _eventually(check: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


async def _fresh_topic(prefix: str) -> str:
    """A new one-partition topic of this test's own."""
    topic = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def test_an_idle_consumer_long_polls_and_the_first_event_after_the_lull_is_applied(
    infrastructure: None, scratch_database: Database
):
    topic = await _fresh_topic("test.idle")

    kafka = KafkaSettings(bootstrap_servers=KAFKA, consumer_idle_after_s=0.5, consumer_idle_fetch_wait_ms=400)
    settings = ServiceSettings(name="idle-test", database_url=scratch_database.url, kafka=kafka)
    applied: list[str] = []

    async def remember(session: AsyncSession, event: Received[Any]) -> None:
        applied.append(event.data.customer_id)

    consumer = EventConsumer(scratch_database, settings, {CustomerCreated.event_type: remember}, [topic])
    task = asyncio.create_task(consumer.run())
    producer = make_producer(kafka, client_id="idle-test")
    await producer.start()
    try:

        def fetch_min_bytes() -> int | None:
            fetcher = getattr(consumer._consumer, "_fetcher", None)
            return None if fetcher is None else fetcher._fetch_min_bytes

        await _eventually(lambda: fetch_min_bytes() == 1)  # nothing on the topic: long polls
        assert consumer._consumer._fetcher._fetch_max_wait_ms == 400  # type: ignore[union-attr]

        data = CustomerCreated(customer_id="c-after-lull", kind="person", status="active", created_at=datetime.now(UTC))
        await producer.send_and_wait(topic, CloudEvent.wrap(data, source="/crm/test").to_json(), key=b"c-after-lull")
        await _eventually(lambda: applied == ["c-after-lull"])
        assert fetch_min_bytes() == kafka.consumer_fetch_min_bytes  # gathering again while events come
        assert consumer._consumer._fetcher._fetch_max_wait_ms == kafka.consumer_fetch_wait_ms  # type: ignore[union-attr]
    finally:
        await producer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_service_fetch_wait_is_what_its_consumer_fetches_with_before_and_after_a_lull(
    infrastructure: None, scratch_database: Database
):
    topic = await _fresh_topic("test.wait")

    kafka = KafkaSettings(bootstrap_servers=KAFKA, consumer_idle_after_s=0.5, consumer_fetch_wait_ms=100)
    settings = ServiceSettings(
        name="wait-test",
        database_url=scratch_database.url,
        kafka=kafka,
        consumer_fetch_wait_ms=7,
        consumer_fetch_min_bytes=2048,
    )
    applied: list[str] = []

    async def remember(session: AsyncSession, event: Received[Any]) -> None:
        applied.append(event.data.customer_id)

    consumer = EventConsumer(scratch_database, settings, {CustomerCreated.event_type: remember}, [topic])
    task = asyncio.create_task(consumer.run())
    producer = make_producer(kafka, client_id="wait-test")
    await producer.start()
    try:

        def fetch() -> tuple[int, int] | None:
            fetcher = getattr(consumer._consumer, "_fetcher", None)
            return None if fetcher is None else (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms)

        await _eventually(lambda: fetch() is not None)
        await _eventually(lambda: fetch() == (1, kafka.consumer_idle_fetch_wait_ms))  # idle: long polls
        data = CustomerCreated(customer_id="c-wait", kind="person", status="active", created_at=datetime.now(UTC))
        await producer.send_and_wait(topic, CloudEvent.wrap(data, source="/crm/test").to_json(), key=b"c-wait")
        await _eventually(lambda: applied == ["c-wait"])
        assert fetch() == (2048, 7)  # the service's own, not KAFKA_CONSUMER_FETCH_WAIT_MS
    finally:
        await producer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
