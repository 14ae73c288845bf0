from datetime import UTC, datetime

import orjson
from sqlalchemy import select

from servicekit.context import correlation_id
from servicekit.db import Database
from servicekit.events.contracts.customer import CustomerCreated
from servicekit.outbox import enqueue
from servicekit.tables import OUTBOX


def _event(customer_id: str = "c-1") -> CustomerCreated:
    return CustomerCreated(customer_id=customer_id, kind="person", status="active", created_at=datetime.now(UTC))


async def _rows(database: Database):
    async with database.sessions() as session:
        return (await session.execute(select(OUTBOX).order_by(OUTBOX.c.id))).all()


async def test_enqueued_events_are_stored_only_when_the_transaction_commits(database: Database):
    async with database.sessions() as session:
        await enqueue(session, _event())
        await session.rollback()
    assert await _rows(database) == []

    async with database.transaction() as session:
        await enqueue(session, _event("c-1"), _event("c-2"))
    rows = await _rows(database)
    assert [r.key for r in rows] == ["c-1", "c-2"]
    assert all(r.topic == "crm.customer.v1" and r.published_at is None for r in rows)


async def test_outbox_row_carries_the_envelope_source_and_correlation_id(database: Database):
    token = correlation_id.set("req-42")
    try:
        async with database.transaction() as session:
            [envelope] = await enqueue(session, _event())
    finally:
        correlation_id.reset(token)
    [row] = await _rows(database)
    payload = orjson.loads(row.payload)
    assert payload["id"] == envelope.id == row.event_id
    assert payload["source"] == "/crm/test"
    assert payload["correlationid"] == "req-42"
    assert ["ce_type", "customer.created"] in row.headers


async def test_commit_with_outbox_rows_wakes_listeners_and_plain_commits_do_not(database: Database):
    wakes: list[int] = []
    database.on_outbox_commit(lambda: wakes.append(1))
    async with database.transaction() as session:
        await session.execute(select(1))
    assert wakes == []
    async with database.transaction() as session:
        await enqueue(session, _event())
    assert wakes == [1]
    async with database.sessions() as session:
        await enqueue(session, _event())
        await session.rollback()
    async with database.transaction() as session:
        await session.execute(select(1))
    assert wakes == [1]
