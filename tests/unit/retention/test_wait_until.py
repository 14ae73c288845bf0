"""A wait that ends early when a named event arrives, and "purchased" read from orders (not statuses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event as sa_event
from sqlalchemy import select

from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork, unit_of_work
from services.retention.batch_rows import preload
from services.retention.catalog.service import ActivePlaybook
from services.retention.models import metadata
from services.retention.replica.models import StatusChange
from services.retention.reports.models import FactEvent
from services.retention.sequences import core as sq
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.models import Enrolment
from services.retention.signals.models import Signal
from services.retention.waits import service as waits
from services.retention.waits.handlers import WaitingCustomers, waking
from services.retention.waits.models import EnrolmentWake
from tests.unit.databases import sqlite_database
from tests.unit.retention.events import complaint

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

DEFINITION = sq.SequenceDef.model_validate(
    {
        "steps": [
            {"id": "offer", "kind": "touch", "action": "win_back_offer"},
            {"id": "wait", "kind": "wait", "hours": 72, "until": ["purchased", "complaint_opened"]},
            {"id": "bought", "kind": "branch", "when": {"purchased": True}, "then": "thanks"},
            {"id": "call", "kind": "task", "action": "call_owner"},
            {"id": "thanks", "kind": "touch", "action": "loyalty_offer"},
        ],
        "stop_when": {"purchased": False},
    }
)
PLAYBOOK = ActivePlaybook(reason="churned", control_share=0.0, steps=(), sequences={"default": DEFINITION})


# ---- pure ---------------------------------------------------------------------------------------------


def test_the_wait_ends_early_only_on_its_own_events_and_only_once_begun():
    state = sq.State(cursor=1, started_at=NOW, waiting_since=NOW, wait_began=NOW)
    early = sq.advance(DEFINITION, state, sq.Facts(arrived=frozenset({"complaint_opened"})), NOW + HOUR)
    assert early.ended_early == (("wait", "complaint_opened"),)
    assert [e.step.id for e in early.effects] == ["call", "thanks"]
    other = sq.advance(DEFINITION, state, sq.Facts(arrived=frozenset({"survey_answered"})), NOW + HOUR)
    assert (
        other.effects == () and other.due_at == NOW + 72 * HOUR and other.wake_on == ("purchased", "complaint_opened")
    )
    # a wait that begins in this walk was not the one the facts were read for
    fresh = sq.advance(DEFINITION, sq.State(cursor=0, started_at=NOW), sq.Facts(arrived=frozenset({"purchased"})), NOW)
    assert [e.step.id for e in fresh.effects] == ["offer"] and fresh.due_at == NOW + 72 * HOUR
    assert fresh.wake_on == ("purchased", "complaint_opened")


def test_until_names_known_events_only():
    with pytest.raises(ValidationError):
        sq.WaitStep(id="w", hours=1, until=("status_changed",))  # type: ignore[arg-type]


# ---- engine -------------------------------------------------------------------------------------------


async def _enrol(db: Database) -> None:
    async with db.transaction() as session:
        await sequence_engine.enrol(
            session, playbook=PLAYBOOK, customer_id="c1", alert_id=None, tier=None, owner="am1", now=NOW
        )


async def _enrolment(db: Database) -> Enrolment:
    async with db.sessions() as session:
        return (await session.execute(select(Enrolment))).scalar_one()


async def _wakes(db: Database) -> list[EnrolmentWake]:
    async with db.sessions() as session:
        return list((await session.execute(select(EnrolmentWake))).scalars())


async def test_an_order_wakes_the_wait_and_the_branch_sees_the_purchase(tmp_path: Path) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await _enrol(db)
        await sequence_engine.run_due(db, batch_size=10, now=NOW)
        [wake] = await _wakes(db)
        assert wake.customer_id == "c1" and wake.events == ",complaint_opened,purchased,"
        # a status change is no purchase: it wakes nothing, and the wait holds
        async with db.transaction() as session:
            session.add(StatusChange(event_id="s1", customer_id="c1", status="won_back", at=NOW + HOUR))
            assert await waits.wake(session, customer_id="c1", event="survey_answered", now=NOW + HOUR) == 0
        assert (await sequence_engine.run_due(db, batch_size=10, now=NOW + HOUR)).claimed == 0
        # the order arrives: the consumer records it and wakes the enrolment
        async with db.transaction() as session:
            session.add(FactEvent(event_id="o1", customer_id="c1", kind="order", amount=20.0, at=NOW + 2 * HOUR))
            assert await waits.wake(session, customer_id="c1", event="purchased", now=NOW + 2 * HOUR) == 1
        ran = await sequence_engine.run_due(db, batch_size=10, now=NOW + 2 * HOUR)
        assert ran.claimed == 1
        row = await _enrolment(db)
        assert row.status == "completed"
        steps = [(t["step"], t.get("result")) for t in row.trail]
        assert ("wait", "ended_by:purchased") in steps and ("thanks", "sent") in steps
        assert "call" not in [s for s, _ in steps]  # the branch jumped over the call
        assert await _wakes(db) == []


async def test_a_complaint_ends_the_wait_and_the_sequence_goes_on(tmp_path: Path) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await _enrol(db)
        await sequence_engine.run_due(db, batch_size=10, now=NOW)
        async with db.transaction() as session:
            session.add(Signal(event_id="e1", customer_id="c1", event_type="complaint.opened", at=NOW + HOUR))
            assert await waits.wake(session, customer_id="c1", event="complaint_opened", now=NOW + HOUR) == 1
        await sequence_engine.run_due(db, batch_size=10, now=NOW + HOUR)
        row = await _enrolment(db)
        steps = [(t["step"], t.get("result")) for t in row.trail]
        assert ("wait", "ended_by:complaint_opened") in steps and ("call", "created") in steps
        assert row.status == "completed" and await _wakes(db) == []


async def test_purchased_in_stop_when_reads_orders_not_statuses(tmp_path: Path) -> None:
    stop_on_purchase = sq.SequenceDef.model_validate(
        {"steps": [{"id": "wait", "kind": "wait", "hours": 24}, {"id": "call", "kind": "task", "action": "call_owner"}]}
    )
    playbook = ActivePlaybook(reason="risk", control_share=0.0, steps=(), sequences={"default": stop_on_purchase})
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        async with db.transaction() as session:
            for customer_id in ("status_only", "ordered"):
                await sequence_engine.enrol(
                    session, playbook=playbook, customer_id=customer_id, alert_id=None, tier=None, owner=None, now=NOW
                )
            session.add(StatusChange(event_id="s1", customer_id="status_only", status="active", at=NOW + HOUR))
            session.add(FactEvent(event_id="o1", customer_id="ordered", kind="order", amount=5.0, at=NOW + HOUR))
        await sequence_engine.run_due(db, batch_size=10, now=NOW)  # the wait begins
        await sequence_engine.run_due(db, batch_size=10, now=NOW + 24 * HOUR)
        async with db.sessions() as session:
            rows = {e.customer_id: e for e in (await session.execute(select(Enrolment))).scalars()}
        assert (rows["ordered"].status, rows["ordered"].stop_reason) == ("stopped", "purchased")
        assert rows["status_only"].status == "completed"


async def test_a_batch_preload_reads_who_waits_once_and_the_other_customers_events_cost_no_statement(
    tmp_path: Path,
) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await _enrol(db)
        await sequence_engine.run_due(db, batch_size=10, now=NOW)  # c1 parks at the wait and registers it
        batch = [complaint("c1"), complaint("c2"), complaint("c3", minutes=1), complaint("c2", minutes=2)]
        statements: list[str] = []

        def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        async def recorded(uow: UnitOfWork, event: Received[Any]) -> None:
            return None

        handle = waking(recorded)
        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", remember)
        async with unit_of_work(db) as uow:
            await preload(uow, batch)
            assert uow.state(WaitingCustomers).ids == {"c1"}
            for received_event in batch:
                await handle(uow, received_event)
        wakes = [s for s in statements if s.lstrip().upper().startswith("UPDATE ENROLMENTS")]
        reads = [s for s in statements if "FROM enrolment_wakes" in s]
        assert len(wakes) == 1  # c1's complaint only
        assert len(reads) == 2  # the preload, and the subquery of c1's wake


async def test_without_a_preload_every_waking_event_still_asks(tmp_path: Path) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await _enrol(db)
        await sequence_engine.run_due(db, batch_size=10, now=NOW)
        statements: list[str] = []

        def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        async def recorded(uow: UnitOfWork, event: Received[Any]) -> None:
            return None

        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", remember)
        async with unit_of_work(db) as uow:  # a message applied on its own (the consumer's retry path)
            await waking(recorded)(uow, complaint("c2"))
        assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE ENROLMENTS")]) == 1
