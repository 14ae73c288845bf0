"""The read model in a consumer batch: its fact_events and customer_facts rows are read once for the batch and
written at commit, one statement per table, whatever the number of events; the figures stay those of one event
at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import Alert
from services.retention.handlers import HANDLERS, preload
from services.retention.reports.models import CustomerFact, FactEvent
from services.retention.touches.models import Touch
from tests.unit.retention.events import complaint, score
from tests.unit.retention.test_reports import order


async def apply_batch(database: Database, events: list[Received]) -> list[str]:
    """Apply events as one consumer batch (preload, handlers, commit); the statements sent."""
    statements: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    try:
        async with database.transaction() as session:
            uow = UnitOfWork(session)
            await preload(uow, events)
            for event in events:
                await HANDLERS[event.envelope.type](uow, event)
    finally:
        sa_event.remove(database.engine.sync_engine, "before_cursor_execute", remember)
    return statements


def on_table(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if f" {table}" in s]


async def facts(database: Database) -> dict[str, tuple[int, float, str, str]]:
    async with database.sessions() as session:
        rows = (await session.execute(select(CustomerFact))).scalars()
        return {f.customer_id: (f.orders, f.revenue, _day(f.first_order_at), _day(f.last_order_at)) for f in rows}


def _day(at: Any) -> str:
    return str(at.date().isoformat())


async def test_a_batch_of_orders_writes_the_read_model_with_a_bounded_number_of_statements(database: Database):
    customers = [f"c-{k}" for k in range(4)]
    first = [order(c, f"2026-03-{day:02d}", 10) for c in customers for day in (10, 11)]  # new facts rows
    later = [order(c, f"2026-04-{day:02d}", 5) for c in customers for day in range(1, 6)]  # updates of them
    late = [order(c, "2026-01-15", 1) for c in customers]  # earlier than each first order, arriving last

    await apply_batch(database, first)
    statements = await apply_batch(database, later + late)

    facts_sent, events_sent = on_table(statements, "customer_facts"), on_table(statements, "fact_events")
    assert len([s for s in facts_sent if s.lstrip().upper().startswith("SELECT")]) == 1
    assert len([s for s in facts_sent if s.lstrip().upper().startswith("UPDATE")]) == 1
    assert len(facts_sent) == 2
    assert len([s for s in events_sent if s.lstrip().upper().startswith("INSERT")]) == 1
    assert len(events_sent) == 2  # which of the batch's events are stored, then the new ones
    assert await facts(database) == {c: (8, 46.0, "2026-01-15", "2026-04-05") for c in customers}

    # Redelivered, under new offsets: nothing changes, and nothing is written.
    again = await apply_batch(database, later + late)
    assert not [s for s in again if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert await facts(database) == {c: (8, 46.0, "2026-01-15", "2026-04-05") for c in customers}
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(FactEvent)) == 4 * 8


async def test_a_batch_of_alerts_reads_consent_once_and_inserts_its_touches_in_one_statement(database: Database):
    events = [complaint(f"c-{k}", minutes=k) for k in range(5)]
    statements = await apply_batch(database, events)
    consent_reads = [s for s in on_table(statements, "consent_replica") if s.lstrip().upper().startswith("SELECT")]
    touch_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO TOUCHES")]
    assert len(consent_reads) == 1 and len(touch_inserts) == 1
    async with database.sessions() as session:
        touched = set((await session.execute(select(Touch.customer_id))).scalars())
    assert touched == {f"c-{k}" for k in range(5)}


async def test_a_batch_that_changes_alerts_in_different_ways_updates_them_in_one_statement(database: Database):
    await apply_batch(database, [e for c in ("c-1", "c-2") for e in (score(c, churn_risk=0.9), complaint(c))])
    async with database.sessions() as session:
        before = {(a.customer_id, a.reason): a.trigger_count for a in (await session.execute(select(Alert))).scalars()}
    # c-1's alerts take a newer risk (risk columns), c-2's complaint alert one more trigger (count, lineage).
    statements = await apply_batch(database, [score("c-1", churn_risk=0.95, minutes=5), complaint("c-2", minutes=6)])

    assert len([s for s in on_table(statements, "alerts") if s.lstrip().upper().startswith("UPDATE")]) == 1
    async with database.sessions() as session:
        after = {(a.customer_id, a.reason): a for a in (await session.execute(select(Alert))).scalars()}
    assert {a.churn_risk for (c, _), a in after.items() if c == "c-1"} == {0.95}
    assert after[("c-2", "severe_complaint")].trigger_count == before[("c-2", "severe_complaint")] + 1
