"""The relay's publish step against a stand-in producer: order, marking, and what a failed send leaves behind."""

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from contracts.customer import CustomerCreated
from servicekit.db import Database
from servicekit.outbox import enqueue
from servicekit.outbox.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX


class _Producer:
    """send() returns a future, as AIOKafkaProducer.send does; keys in fail_keys fail at the broker."""

    def __init__(self, fail_keys: Collection[str] = frozenset()) -> None:
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
    assert await relay.publish_batch(producer) == 3
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2", b"c-3"]
    assert await _unpublished(database) == []
    assert await relay.publish_batch(producer) == 0
    assert len(producer.sent) == 3


async def test_a_failed_send_leaves_that_row_and_every_later_one_for_the_next_attempt(database: Database):
    await _enqueue(database, "c-1", "bad", "c-3")
    relay = _relay(database)
    with pytest.raises(RuntimeError, match="not published"):
        await relay.publish_batch(_Producer(fail_keys={"bad"}))
    assert await _unpublished(database) == ["bad", "c-3"]
    retry = _Producer()
    assert await relay.publish_batch(retry) == 2
    assert [k for _, k in retry.sent] == [b"bad", b"c-3"]


async def _published_at(database: Database) -> dict[str, datetime | None]:
    async with database.sessions() as session:
        rows = await session.execute(select(OUTBOX.c.key, OUTBOX.c.published_at).order_by(OUTBOX.c.id))
        return {key: at.replace(tzinfo=UTC) if at and at.tzinfo is None else at for key, at in rows}


class _CommitWhilePublishing(_Producer):
    """A producer during whose first send another transaction commits a row (c-3)."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database

    async def send(self, topic: str, *, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
        if not self.sent:
            await _enqueue(self.database, "c-3")
        return await super().send(topic, value=value, key=key, headers=headers)


async def first_round_with_a_commit_while_publishing(database: Database) -> tuple[OutboxRelay, _Producer]:
    """c-1 and c-2 published while c-3 commits, so the relay defers their mark to its next read."""
    relay = _relay(database)
    await _enqueue(database, "c-1", "c-2")
    relay._wake.clear()  # as the relay's wait does when a commit wakes it
    producer = _CommitWhilePublishing(database)
    assert await relay.publish_batch(producer, defer_mark=True) == 2
    return relay, producer


async def deferred_mark_rides_with_the_next_read(database: Database) -> OutboxRelay:
    """The scenario, on any store: a batch published while a commit came in is marked by the next read."""
    relay, producer = await first_round_with_a_commit_while_publishing(database)
    assert await _unpublished(database) == ["c-1", "c-2", "c-3"]  # c-1 and c-2 acked, not marked yet
    first_ack = relay._acked.get("acked_at")
    assert relay._acked.get("ids") and first_ack is not None

    assert await relay.publish_batch(producer) == 1
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2", b"c-3"]  # nothing published twice
    assert await _unpublished(database) == []
    published_at = await _published_at(database)
    # each batch's broker ack time, not the time its mark was written
    assert published_at["c-1"] == published_at["c-2"] == first_ack
    assert published_at["c-3"] is not None and published_at["c-3"] > first_ack
    return relay


async def test_a_deferred_mark_rides_with_the_next_read_and_keeps_the_ack_time(database: Database):
    await deferred_mark_rides_with_the_next_read(database)


async def test_a_relay_with_nothing_waiting_marks_its_batch_at_once(database: Database):
    await _enqueue(database, "c-1")
    relay = _relay(database)
    relay._wake.clear()  # no commit since: the relay would go on to wait
    assert await relay.publish_batch(_Producer(), defer_mark=True) == 1
    assert await _unpublished(database) == []
    assert relay._acked == {}


async def test_a_stopping_relay_marks_what_the_broker_acknowledged(database: Database):
    relay = _relay(database)
    await _enqueue(database, "c-1", "c-2")
    producer = _CommitWhilePublishing(database)  # so the first round defers its mark
    calls: list[int] = []
    stopped_before_second_round = asyncio.Event()

    async def producer_then_hang() -> _Producer:
        calls.append(1)
        if len(calls) > 1:
            stopped_before_second_round.set()
            await asyncio.Event().wait()  # the second round never starts: its read would carry the mark
        return producer

    relay._ensure_producer = producer_then_hang  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(stopped_before_second_round.wait(), 5)
    assert await _unpublished(database) == ["c-1", "c-2", "c-3"]  # acked, the mark still pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _unpublished(database) == ["c-3"]  # the stop marked c-1 and c-2: no duplicates next run
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2"]


async def test_under_load_a_round_starts_no_sooner_than_the_interval_after_the_last(database: Database, monkeypatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("servicekit.outbox.relay.asyncio.sleep", sleep)
    # A clock that stands still, so the round's own duration on a busy machine cannot use up the interval.
    now = [1000.0]
    monkeypatch.setattr("servicekit.outbox.relay.time", SimpleNamespace(monotonic=lambda: now[0]))
    relay = _relay(database)
    interval_s = relay.settings.relay_round_interval_ms() / 1000
    assert interval_s > 0
    await relay.publish_batch(_Producer())  # a round starts now
    await relay._pace()
    assert slept == [pytest.approx(interval_s)]

    now[0] += interval_s  # the last round started a whole interval ago (a lull)
    await relay._pace()
    assert len(slept) == 1  # reads at once


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError


def _running(database: Database, producer: _Producer, poll_interval_s: float) -> tuple[OutboxRelay, asyncio.Task[None]]:
    settings = ServiceSettings(name="test", database_url=database.url, relay_poll_interval_s=poll_interval_s)
    relay = OutboxRelay(database, settings)

    async def ensure_producer() -> _Producer:
        return producer

    relay._ensure_producer = ensure_producer  # type: ignore[method-assign]
    return relay, asyncio.create_task(relay.run())


async def test_at_an_ordinary_rate_the_loop_leaves_each_mark_to_the_next_read(database: Database):
    producer = _Producer()
    relay, task = _running(database, producer, poll_interval_s=30)
    try:

        async def parked() -> bool:  # waiting for a wake-up after its first, empty round
            return bool(relay._wake._waiters)  # type: ignore[attr-defined]

        # Enqueued while the first round runs, c-1 could be read before its commit's wake-up is set, and that
        # wake-up would start a second round at once, carrying the mark this test looks for.
        await _until(parked)
        await _enqueue(database, "c-1")

        async def sent(count: int) -> bool:
            return len(producer.sent) >= count

        await _until(lambda: sent(1))
        assert await _unpublished(database) == ["c-1"]  # acknowledged; no statement of its own marks it
        await _enqueue(database, "c-2")  # the commit wakes the relay: its read carries c-1's mark
        await _until(lambda: sent(2))
        assert await _unpublished(database) == ["c-2"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await _unpublished(database) == []  # the stop marked the last one
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2"]


async def test_a_relay_that_waited_a_poll_interval_with_nothing_to_read_marks_by_itself(database: Database):
    producer = _Producer()
    relay, task = _running(database, producer, poll_interval_s=0.05)
    try:
        await _enqueue(database, "c-1")

        async def marked() -> bool:
            return bool(producer.sent) and await _unpublished(database) == []

        await _until(marked)
        assert relay._acked == {}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [k for _, k in producer.sent] == [b"c-1"]


async def test_the_backlog_counts_unpublished_rows_up_to_its_cap_and_ages_the_oldest(database: Database):
    relay = _relay(database)
    assert await relay.backlog() == (0, 0.0)
    await _enqueue(database, "c-1")
    await asyncio.sleep(0.05)
    await _enqueue(database, "c-2", "c-3")
    count, oldest_age_s = await relay.backlog()
    assert count == 3
    assert oldest_age_s >= 0.05  # c-1's age, not the newer rows'
    assert (await relay.backlog(cap=2))[0] == 2  # past the cap: "at least this many"
    await relay.publish_batch(_Producer())
    await relay.publish_batch(_Producer())  # the deferred mark rides with the next read
    assert await relay.backlog() == (0, 0.0)
