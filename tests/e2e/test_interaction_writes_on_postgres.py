"""POST /interactions' write path on the real server: the common case is one statement in autocommit
(the interaction, its outbox rows and the relays' NOTIFY commit together); every other case falls back to
a transaction of its own and writes nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy import event, func, select

from servicekit.db import Database
from servicekit.outbox.writer import NOTIFY_CHANNEL
from servicekit.problems import Problem
from servicekit.tables import OUTBOX
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.service import record_interaction
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from tests.e2e.conftest import database_url
from tests.unit.interaction.conftest import SLA_HOURS, FakeCustomerService

DB = "interaction_writes"
COMPLAINT = {"type": "complaint", "severity": "high", "category": "delivery", "text": "Two weeks late."}


@pytest.fixture
async def database(postgres: None) -> AsyncIterator[Database]:
    """A database of its own with the interaction service's tables and one known, active customer."""
    admin = await asyncpg.connect(database_url("postgres").replace("+asyncpg", ""))
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    database = Database(database_url(DB), source="/crm/interaction")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with database.transaction() as session:
        session.add(KnownCustomer(customer_id="c-1", status="active", version=1))
        session.add(KnownCustomer(customer_id="c-gone", status="active", version=2, erased=True))
    try:
        yield database
    finally:
        await database.dispose()
        await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await admin.close()


async def _record(
    database: Database, statements: list[str] | None = None, lookup: FakeCustomerService | None = None, **fields: Any
) -> tuple[Interaction, bool]:
    """As the API does it: a session with no transaction begun, the service call, then commit."""
    data = InteractionCreate(**{"customer_id": "c-1", **fields})

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statements is not None:
            statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with database.sessions() as session:
            result = await record_interaction(
                session=session, data=data, sla_hours=SLA_HOURS, lookup=(lookup or FakeCustomerService()).fetch
            )
            await session.commit()
        return result
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)


async def _outbox(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        rows = await session.execute(select(OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload).order_by(OUTBOX.c.id))
        return [{"topic": r.topic, "key": r.key, **orjson.loads(r.payload)} for r in rows]


async def _interactions(database: Database) -> int:
    async with database.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Interaction))).scalar_one()


async def test_a_new_interaction_commits_with_its_events_and_notify_in_one_statement(database: Database):
    listener = await asyncpg.connect(database_url(DB).replace("+asyncpg", ""))
    notified: list[str] = []
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: notified.append(args[2]))
    statements: list[str] = []
    try:
        complaint, created = await _record(database, statements, **COMPLAINT, external_id="crm-1")
        await listener.execute("SELECT 1")  # a round trip, so a pending notification has arrived
    finally:
        await listener.close()

    assert created
    assert len(statements) == 1 and "pg_notify" in statements[0]
    assert notified == [NOTIFY_CHANNEL]
    events = await _outbox(database)
    assert [(e["type"], e["data"].get("interaction_id") or e["data"].get("complaint_id")) for e in events] == [
        ("interaction.recorded", complaint.id),
        ("complaint.opened", complaint.id),
    ]
    assert {e["key"] for e in events} == {"c-1"} and {e["topic"] for e in events} == {"crm.interaction.v1"}
    async with database.sessions() as session:
        stored = await session.get(Interaction, complaint.id)
    assert stored is not None and stored.external_id == "crm-1" and stored.complaint_status == "open"
    assert stored.due_at == complaint.due_at


async def test_a_retry_answers_the_stored_interaction_and_a_reused_external_id_is_a_conflict(database: Database):
    first, _ = await _record(database, **COMPLAINT, external_id="crm-2")
    again, created = await _record(database, **COMPLAINT, external_id="crm-2")
    assert (again.id, created) == (first.id, False)
    with pytest.raises(Problem) as conflict:
        await _record(database, type="purchase", amount="10", currency="EUR", external_id="crm-2")
    assert conflict.value.status == 409
    assert await _interactions(database) == 1
    assert len(await _outbox(database)) == 2  # the first request's events only


async def test_an_erased_customer_gets_410_and_nothing_is_written(database: Database):
    with pytest.raises(Problem) as gone:
        await _record(database, customer_id="c-gone", **COMPLAINT)
    assert gone.value.status == 410
    assert await _interactions(database) == 0 and await _outbox(database) == []


async def test_a_customer_the_replica_lacks_is_looked_up_and_recorded_in_one_transaction(database: Database):
    lookup = FakeCustomerService("c-new")
    statements: list[str] = []
    interaction, created = await _record(database, statements, lookup, customer_id="c-new", type="visit")
    assert created and lookup.asked == ["c-new"]
    assert len(statements) > 1  # the fallback: replica read, replica row, interaction, outbox
    assert [e["data"]["interaction_id"] for e in await _outbox(database)] == [interaction.id]
    async with database.sessions() as session:
        assert (await session.get(KnownCustomer, "c-new")) is not None

    with pytest.raises(Problem) as unknown:
        await _record(database, lookup=FakeCustomerService(), customer_id="c-nobody", type="visit")
    assert unknown.value.status == 404
    assert await _interactions(database) == 1
