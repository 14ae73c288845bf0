import asyncio
from datetime import UTC, datetime

import orjson
from sqlalchemy import event, select

from contracts.customer import CustomerCreated
from servicekit.context import correlation_id
from servicekit.db import Database
from servicekit.events.envelope import CONTENT_TYPE
from servicekit.outbox import enqueue, enqueue_raw
from servicekit.outbox.writer import event_source, outbox_row, write_at_commit, write_rows
from servicekit.tables import OUTBOX
from tests.statements import statements_sent


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


async def test_rows_written_by_a_before_commit_hook_commit_and_wake_the_relay_exactly_as_enqueued_ones(
    database: Database,
):
    """The synchronous door (outbox_row + write_rows) is what a write-behind uses where nothing can be awaited."""
    wakes: list[int] = []
    database.on_outbox_commit(lambda: wakes.append(1))

    def hook_writing(rows: list[dict]) -> object:
        return lambda sync_session: write_rows(sync_session, rows)

    async with database.sessions() as session:
        row = outbox_row(_event("c-0"), source=event_source(session), correlation_id=None)
        event.listen(session.sync_session, "before_commit", hook_writing([row]))
        await session.rollback()
    assert await _rows(database) == [] and wakes == []

    async with database.transaction() as session:
        row = outbox_row(_event("c-9"), source=event_source(session), correlation_id="req-7")
        event.listen(session.sync_session, "before_commit", hook_writing([row]))
        await enqueue(session, _event("c-1"))
    rows = await _rows(database)
    assert [r.key for r in rows] == ["c-1", "c-9"]
    payload = orjson.loads(rows[1].payload)
    assert (payload["source"], payload["correlationid"], payload["id"]) == ("/crm/test", "req-7", rows[1].event_id)
    headers = [["content-type", CONTENT_TYPE], ["ce_type", "customer.created"], ["ce_id", payload["id"]]]
    assert rows[1].headers == headers
    assert wakes == [1]


async def test_rows_held_for_commit_are_written_in_one_statement_in_the_order_they_were_enqueued(database: Database):
    wakes: list[int] = []
    database.on_outbox_commit(lambda: wakes.append(1))
    with statements_sent(database.engine.sync_engine, "INSERT INTO outbox") as inserts:
        async with database.sessions() as session:
            write_at_commit(session)
            await enqueue(session, _event("c-0"))
            await session.rollback()
        assert await _rows(database) == [] and wakes == [] and inserts == []

        async with database.transaction() as session:
            write_at_commit(session)
            await enqueue(session, _event("c-1"))
            await enqueue(session, _event("c-2"), _event("c-3"))
            await enqueue_raw(session, topic="crm.customer.v1.dlq", key="c-4", payload=b"{}", headers=[])
            assert inserts == []  # held until the commit
    assert [r.key for r in await _rows(database)] == ["c-1", "c-2", "c-3", "c-4"]
    assert len(inserts) == 1 and wakes == [1]


async def test_a_direct_write_after_held_rows_keeps_the_order_of_enqueueing(database: Database):
    async with database.transaction() as session:
        write_at_commit(session)
        await enqueue(session, _event("c-1"))
        row = outbox_row(_event("c-2"), source=event_source(session), correlation_id=None)
        await session.run_sync(write_rows, [row])
        await enqueue(session, _event("c-3"))
    assert [r.key for r in await _rows(database)] == ["c-1", "c-2", "c-3"]


async def test_rows_held_for_the_commit_are_stamped_when_written_not_when_enqueued(database: Database):
    async with database.transaction() as session:
        write_at_commit(session)
        await enqueue(session, _event("c-1"))
        enqueued_by = datetime.now(UTC)
        await asyncio.sleep(0.02)  # the rest of a consumer batch's work
        work_done_at = datetime.now(UTC)
    [row] = await _rows(database)
    created_at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    # the relay's commit -> publish delay starts at the write, just before the commit
    assert created_at >= work_done_at > enqueued_by


def test_the_outbox_row_is_byte_for_byte_what_the_envelope_model_gives():
    from decimal import Decimal

    from contracts.interaction import InteractionRecorded
    from servicekit.events.envelope import CloudEvent
    from servicekit.outbox.writer import _wrapped, envelope_row

    when = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    data = InteractionRecorded(
        customer_id="c-1",
        interaction_id="i-1",
        type="purchase",
        occurred_at=when,
        amount=Decimal("1.50"),
        currency="EUR",
    )
    traces = [
        None,
        {},
        {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        {"traceparent": "tp", "tracestate": "k=v"},
    ]
    for trace, correlation, now in [
        (t, c, n) for t in traces for c in (None, "req-1") for n in (when, when.replace(microsecond=0))
    ]:
        fields, row = _wrapped(data, "/crm/interaction", correlation, trace, now)
        model = CloudEvent.wrap(data, source="/crm/interaction", correlation_id=correlation, trace=trace)
        model.id, model.time = fields["id"], now
        assert row == envelope_row(model, data.topic, now)
        assert CloudEvent.model_construct(**fields) == model
