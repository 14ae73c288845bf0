"""A consumer batch locks and reads its customers' replicas, latest scores, unresolved alerts and consent, and
checks the catalog, in one statement (batch_rows): the same rows, in the same per-transaction states, as the
separate reads it replaced (tests/unit/retention/batch_reference.py: the replicas' and alerts' locking reads,
the consent read, the catalog's token read)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select

from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.alerts import service as alerts
from services.retention.alerts.models import Alert, open_slot
from services.retention.catalog.models import CatalogVersion
from services.retention.catalog.service import CatalogInTransaction
from services.retention.replica import service as replica
from services.retention.replica.models import Customer, CustomerScore
from services.retention.touches import service as touches
from services.retention.touches.models import ConsentReplica
from tests.unit.retention.batch_reference import separately

AT = datetime(2026, 3, 1, tzinfo=UTC)
REASONS = ("complaint", "risk_rise", "inactive", "low_nps")


async def seed_random(database: Database, seed: int, customers: int) -> None:
    """Replicas, scores, consent (each for some customers) and alerts: unresolved ones (holding their slot)
    and resolved ones (not), several per customer."""
    rng = random.Random(seed)
    rows: list[object] = []
    for n in range(customers):
        i = f"b-{n:04d}"
        if rng.random() < 0.8:
            rows.append(Customer(customer_id=i, owner=rng.choice(("ann", None)), tier=rng.choice(("gold", None))))
        if rng.random() < 0.6:
            rows.append(
                CustomerScore(customer_id=i, churn_risk=rng.random(), value_tier=rng.choice(("platinum", None)))
            )
        if rng.random() < 0.3:
            rows.append(ConsentReplica(customer_id=i, version=rng.randint(1, 9), channels={"email": "opt_in"}))
        for reason in rng.sample(REASONS, rng.choice((0, 0, 1, 2, 3))):
            at = AT - timedelta(days=rng.randint(0, 90))
            unresolved = rng.random() < 0.6
            rows.append(
                Alert(
                    customer_id=i,
                    reason=reason,
                    severity="medium",
                    status="open" if unresolved else "resolved",
                    first_triggered_at=at,
                    last_triggered_at=at,
                    factors=[{"name": "tenure", "weight": rng.random()}],
                    event_ids=[f"{i}-{reason}"],
                    open_slot=open_slot(i, reason) if unresolved else None,
                )
            )
    async with database.transaction() as session:
        session.add_all(rows)


def _values(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {a.key: getattr(row, a.key) for a in inspect(type(row)).column_attrs}


def snapshot(uow: UnitOfWork) -> dict[str, Any]:
    """What the batch's later lookups find in the transaction's states, as plain values."""
    replicas = uow.state(replica.Replicas)
    found = uow.state(CatalogInTransaction).found
    return {
        "customers": {i: _values(r) for i, r in replicas.customers.items()},
        "scores": {i: _values(r) for i, r in replicas.scores.items()},
        "alerts": {
            i: sorted((_values(a) for a in rows), key=repr)
            for i, rows in uow.state(alerts.UnresolvedAlerts).by_customer.items()
        },
        "consents": {i: _values(r) for i, r in uow.state(touches.Consents).replicas.items()},
        "token": found.token if found is not None else None,
    }


async def assert_one_statement_equals_the_separate_reads(database: Database, seed: int) -> None:
    await seed_random(database, seed, customers=300)
    rng = random.Random(seed)
    unknown = [f"b-{n:04d}" for n in range(300, 310)]
    samples = [sorted(set(rng.sample([f"b-{n:04d}" for n in range(300)], k) + unknown[:k])) for k in (1, 2, 40)]
    samples.append(sorted({f"b-{n:04d}" for n in range(310)}))
    for ids in samples:
        async with database.transaction() as session:
            folded = UnitOfWork(session)
            await batch_rows.lock_and_load(folded, ids)
            got = snapshot(folded)
        async with database.transaction() as session:
            expected = UnitOfWork(session)
            await separately(expected, ids)
            assert got == snapshot(expected)
    # the last sample, every customer: each kind of row was there to be read
    assert sum(v is not None for v in got["customers"].values()) > 200
    assert sum(v is not None for v in got["scores"].values()) > 150
    assert sum(v is not None for v in got["consents"].values()) > 50
    assert sum(len(v) for v in got["alerts"].values()) > 100
    assert got["token"]


@pytest.mark.parametrize("seed", [1, 2])
async def test_one_statement_gives_the_rows_and_catalog_of_the_separate_reads(database: Database, seed: int) -> None:
    await assert_one_statement_equals_the_separate_reads(database, seed)


async def test_a_second_call_in_the_transaction_reads_only_customers_it_has_not_loaded(database: Database) -> None:
    await seed_random(database, 3, customers=60)
    first, second = [f"b-{n:04d}" for n in range(0, 40)], [f"b-{n:04d}" for n in range(20, 60)]
    async with database.transaction() as session:
        twice = UnitOfWork(session)
        await batch_rows.lock_and_load(twice, first)
        kept = dict(twice.state(alerts.UnresolvedAlerts).by_customer)
        await batch_rows.lock_and_load(twice, second)
        got = snapshot(twice)
        # the lists already loaded are the same objects (later events of the batch may have changed them)
        assert all(twice.state(alerts.UnresolvedAlerts).by_customer[i] is kept[i] for i in first)
    async with database.transaction() as session:
        once = UnitOfWork(session)
        await separately(once, sorted({*first, *second}))
        assert got == snapshot(once)


async def test_the_catalog_is_read_again_when_the_token_in_the_statement_has_changed(database: Database) -> None:
    await seed_random(database, 4, customers=5)
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await batch_rows.lock_and_load(uow, ["b-0000"])
        before = uow.state(CatalogInTransaction).found
    async with database.transaction() as session:
        (await session.execute(select(CatalogVersion))).scalar_one().token = "changed-token"
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await batch_rows.lock_and_load(uow, ["b-0001"])
        after = uow.state(CatalogInTransaction).found
    assert before is not None and after is not None
    assert after.token == "changed-token" != before.token
