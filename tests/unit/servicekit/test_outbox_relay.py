"""The relay's publish step against a stand-in producer: order, marking, and what a failed send leaves behind."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.events.contracts.customer import CustomerCreated
from servicekit.outbox import enqueue
from servicekit.outbox.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX


class _Producer:
    """send() returns a future, as AIOKafkaProducer.send does; keys in fail_keys fail at the broker."""

    def __init__(self, fail_keys: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail_keys = fail_keys
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key is not None and key.decode() in self.fail_keys:
            future.set_exception(ConnectionError("broker went away"))
        else:
            self.sent.append((topic, key))
            future.set_result(None)
        return future


def _relay(database: Database) -> OutboxRelay:
    return OutboxRelay(database, ServiceSettings(name="test", database_url=database.url))


async def _enqueue(database: Database, *customers: str) -> None:
    async with database.transaction() as session:
        await enqueue(
            session,
            *(
                CustomerCreated(customer_id=c, kind="person", status="active", created_at=datetime.now(UTC))
                for c in customers
            ),
        )


async def _unpublished(database: Database) -> list[str]:
    async with database.sessions() as session:
        rows = await session.execute(select(OUTBOX.c.key).where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id))
        return list(rows.scalars())


async def test_committed_rows_are_published_in_commit_order_and_marked_once(database: Database):
    await _enqueue(database, "c-1", "c-2")
    await _enqueue(database, "c-3")
    producer = _Producer()
    relay = _relay(database)
    assert await relay.publish_batch(producer) == 3  # type: ignore[arg-type]
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2", b"c-3"]
    assert await _unpublished(database) == []
    assert await relay.publish_batch(producer) == 0  # type: ignore[arg-type]
    assert len(producer.sent) == 3


async def test_a_failed_send_leaves_that_row_and_every_later_one_for_the_next_attempt(database: Database):
    await _enqueue(database, "c-1", "bad", "c-3")
    relay = _relay(database)
    with pytest.raises(RuntimeError, match="not published"):
        await relay.publish_batch(_Producer(fail_keys={"bad"}))  # type: ignore[arg-type]
    assert await _unpublished(database) == ["bad", "c-3"]
    retry = _Producer()
    assert await relay.publish_batch(retry) == 2  # type: ignore[arg-type]
    assert [k for _, k in retry.sent] == [b"bad", b"c-3"]
