"""The retention consumer's batch preload (services/retention/batch_rows.py) on PostgreSQL: the same rows and
signals as the separate statements it replaced, and their lock order (every customer row, then every latest
score, then every unresolved alert, then the read model's facts rows), the order any other batch takes them in,
or two batches could deadlock; with the inbox claim in its first statement, the same claimed events, states and
signals as the claim on its own, and the claim's wait for another applier of the same event before any lock."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.inbox import ClaimingHook
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.alerts.models import Alert, open_slot
from services.retention.alerts.service import UnresolvedAlerts
from services.retention.handlers import BEFORE_BATCH
from services.retention.replica.models import Customer, CustomerScore
from services.retention.replica.service import Replicas
from services.retention.reports.batch import ReadModelBatch
from services.retention.reports.models import CustomerFact
from services.retention.signals.service import BatchSignals
from tests.e2e.test_metric_totals_on_postgres import _now, migrated
from tests.unit.retention.events import complaint, score
from tests.unit.retention.test_batch_claim import (
    applier,
    assert_the_claim_in_the_preload_equals_the_claim_then_the_preload,
    claim_of,
)
from tests.unit.retention.test_batch_preload import assert_the_fold_equals_the_separate_statements
from tests.unit.retention.test_batch_rows import AT, assert_one_statement_equals_the_separate_reads
from tests.unit.retention.test_reports import order


async def test_one_statement_gives_the_rows_and_catalog_of_the_separate_reads_on_postgres(postgres: None) -> None:
    async with migrated() as (database, _):
        await assert_one_statement_equals_the_separate_reads(database, 5)


async def _until_waiting(watcher: AsyncConnection, pid: list[int], tries: int = 600) -> None:
    """Until the batch's backend (its pid, once known) waits on a row lock, or about 30 s."""
    for _ in range(tries):
        if pid and await _now(watcher, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p", pid[0]) == "Lock":
            return
        await asyncio.sleep(0.05)


async def _free(watcher: AsyncConnection, table: str, customer_id: str) -> bool:
    """Whether another transaction could lock the customer's rows of `table` now."""
    try:
        await watcher.execute(
            text(f"SELECT 1 FROM {table} WHERE customer_id = :c FOR UPDATE NOWAIT"), {"c": customer_id}
        )
        return True
    except DBAPIError:
        return False
    finally:
        await watcher.rollback()


async def test_the_batch_locks_every_replica_then_every_score_then_every_unresolved_alert(postgres: None) -> None:
    async with migrated() as (database, _):
        async with database.transaction() as session:
            for i in ("c-1", "c-2"):
                session.add_all([Customer(customer_id=i), CustomerScore(customer_id=i, churn_risk=0.5)])
                session.add(
                    Alert(
                        customer_id=i,
                        reason="complaint",
                        severity="medium",
                        first_triggered_at=AT,
                        last_triggered_at=AT,
                        open_slot=open_slot(i, "complaint"),
                    )
                )
        async with database.engine.connect() as holder, database.engine.connect() as watcher:
            await holder.execute(text("SELECT 1 FROM customer_scores WHERE customer_id = 'c-2' FOR UPDATE"))
            pid: list[int] = []

            async def batch() -> UnitOfWork:
                async with database.transaction() as session:
                    pid.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                    uow = UnitOfWork(session)
                    await batch_rows.lock_and_load(uow, ["c-1", "c-2"])
                    return uow

            locking = asyncio.create_task(batch())
            await _until_waiting(watcher, pid)  # on c-2's score

            # Waiting for c-2's score: both replicas and c-1's score are its, no alert yet.
            assert not await _free(watcher, "customers", "c-1")
            assert not await _free(watcher, "customers", "c-2")
            assert not await _free(watcher, "customer_scores", "c-1")
            assert await _free(watcher, "alerts", "c-1")
            assert await _free(watcher, "alerts", "c-2")
            await holder.commit()
            uow = await locking
            assert set(uow.state(Replicas).scores) == {"c-1", "c-2"}
            assert [len(uow.state(UnresolvedAlerts).by_customer[i]) for i in ("c-1", "c-2")] == [1, 1]


async def test_an_alert_raised_while_the_batch_waited_for_a_score_is_read_and_locked(postgres: None) -> None:
    """`POST /alerts/evaluate` locks a latest score, then raises an alert, without the replica's lock. A batch
    waiting for that score must find the new alert once it gets the score, as the separate reads did (a read
    with the snapshot from before the wait would miss it, and the batch would raise the alert a second time)."""
    async with migrated() as (database, _):
        async with database.transaction() as session:
            session.add_all([Customer(customer_id="c-1"), CustomerScore(customer_id="c-1", churn_risk=0.5)])
        async with database.engine.connect() as evaluate, database.engine.connect() as watcher:
            await evaluate.execute(text("SELECT 1 FROM customer_scores WHERE customer_id = 'c-1' FOR UPDATE"))
            pid: list[int] = []

            async def batch() -> UnitOfWork:
                async with database.transaction() as session:
                    pid.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                    uow = UnitOfWork(session)
                    await batch_rows.lock_and_load(uow, ["c-1"])
                    return uow

            locking = asyncio.create_task(batch())
            await _until_waiting(watcher, pid)  # on the score
            await evaluate.execute(
                text(
                    "INSERT INTO alerts (id, customer_id, reason, severity, status, trigger_count, first_triggered_at,"
                    " last_triggered_at, control, factors, event_ids, open_slot, created_at, updated_at)"
                    " VALUES ('a-1', 'c-1', 'complaint', 'medium', 'open', 1, now(), now(), false, '[]', '[]',"
                    " :slot, now(), now())"
                ),
                {"slot": open_slot("c-1", "complaint")},
            )
            await evaluate.commit()
            uow = await locking
            assert [a.id for a in uow.state(UnresolvedAlerts).by_customer["c-1"]] == ["a-1"]


async def test_the_folded_preload_gives_the_states_and_signals_of_the_separate_statements_on_postgres(
    postgres: None,
) -> None:
    async with migrated() as (database, _):
        await assert_the_fold_equals_the_separate_statements(database, 7)


async def test_the_batch_stores_its_signals_and_locks_the_facts_rows_last_in_its_first_statement(
    postgres: None,
) -> None:
    """While the batch waits for a customer_facts row another transaction holds, it has stored its signals and
    holds every replica, latest score and the facts rows before that one (the old statements' order); once
    it gets the row it reads the row as that transaction committed it."""
    async with migrated() as (database, _):
        async with database.transaction() as session:
            for i in ("c-1", "c-2"):
                session.add_all([Customer(customer_id=i), CustomerScore(customer_id=i, churn_risk=0.5)])
                session.add(CustomerFact(customer_id=i, orders=1))
        events = [order("c-1", "2026-03-01", 10), order("c-2", "2026-03-01", 10), complaint("c-1")]
        async with database.engine.connect() as holder, database.engine.connect() as watcher:
            await holder.execute(text("UPDATE customer_facts SET orders = 7 WHERE customer_id = 'c-2'"))
            pid: list[int] = []

            async def batch() -> UnitOfWork:
                async with database.transaction() as session:
                    pid.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                    uow = UnitOfWork(session)
                    await batch_rows.preload(uow, events)
                    return uow

            locking = asyncio.create_task(batch())
            await _until_waiting(watcher, pid)  # on c-2's facts
            for table in ("customers", "customer_scores"):
                assert not await _free(watcher, table, "c-1")
                assert not await _free(watcher, table, "c-2")
            assert not await _free(watcher, "customer_facts", "c-1")
            writes = await _now(
                watcher,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE l.pid = :p AND c.relname = 'signals' AND l.mode = 'RowExclusiveLock'",
                pid[0],
            )
            assert writes == 1  # the complaint's signal is written, in the statement that waits
            await holder.commit()
            uow = await locking
            facts = uow.state(ReadModelBatch).facts
            assert {i: f.orders for i, f in facts.items() if f is not None} == {"c-1": 1, "c-2": 7}
            assert uow.state(BatchSignals).unapplied == {events[2].id: True}


async def test_the_claim_in_the_preload_claims_loads_and_stores_what_the_claim_then_the_preload_did_on_postgres(
    postgres: None,
) -> None:
    async with migrated() as (database, _):
        await assert_the_claim_in_the_preload_equals_the_claim_then_the_preload(database, 7)


@pytest.mark.parametrize("other", ["commits", "rolls back"])
async def test_the_batch_waits_at_its_claim_for_another_applier_of_its_event_before_it_locks_a_row(
    postgres: None, other: str
) -> None:
    """Another consumer applies one of the batch's events (its inbox row written, not committed): the batch
    waits in its first statement at the claim, holding no customer row yet (as a claim of its own waited);
    then it skips the event if that consumer committed, and applies it if it rolled back."""
    async with migrated() as (database, _):
        async with database.transaction() as session:
            session.add_all([Customer(customer_id="c-1"), CustomerScore(customer_id="c-1", churn_risk=0.5)])
        events = [complaint("c-1"), score("c-1", 0.9, minutes=5)]
        group = applier(database).group
        async with database.engine.connect() as holder, database.engine.connect() as watcher:
            await holder.execute(
                text(
                    "INSERT INTO inbox (consumer, event_id, event_type, outcome, handled_at)"
                    " VALUES (:g, :e, 'complaint.opened', 'handled', now())"
                ),
                {"g": group, "e": events[0].id},
            )
            pid: list[int] = []

            async def batch() -> tuple[UnitOfWork, set[str]]:
                async with database.transaction() as session:
                    pid.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                    uow = UnitOfWork(session)
                    assert isinstance(BEFORE_BATCH, ClaimingHook)
                    return uow, await BEFORE_BATCH.claim_and_load(uow, events, claim_of(database, events))

            claiming = asyncio.create_task(batch())
            await _until_waiting(watcher, pid)  # on the other consumer's inbox row
            assert await _free(watcher, "customers", "c-1")
            assert await _free(watcher, "customer_scores", "c-1")
            await (holder.commit() if other == "commits" else holder.rollback())
            uow, claimed = await claiming
            applied = [events[1]] if other == "commits" else events
            assert claimed == {e.id for e in applied}
            assert uow.state(BatchSignals).unapplied == {e.id: True for e in applied}
            assert uow.state(Replicas).customers["c-1"] is not None
