"""A read-model refresh writes only the contribution rows that changed: the table and totals it leaves are
those of the full rewrite it replaced (every row of a changed customer deleted and inserted again), on
random stores, and a customer's unchanged rows stay where they are (no dead rows for them)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, delete, select, update

from servicekit.db import Database
from services.retention.alerts.models import Alert, AlertStatus, Outcome
from services.retention.outcomes import core as outcomes
from services.retention.outcomes import read_model
from services.retention.outcomes import refresh_reads as reads
from services.retention.outcomes.models import MetricFact, MetricTotal
from services.retention.replica.models import Customer, StatusChange
from tests.unit.retention.test_metric_totals import rebuild
from tests.unit.retention.test_metrics_paging import START, _seed_random

F = MetricFact.__table__  # type: ignore[attr-defined]


def test_the_difference_leaves_rows_in_both_alone_and_counts_repeated_rows() -> None:
    a, b, c, d = ("a",), ("b",), ("c",), ("d",)
    gone_ids, gone, added = reads.difference([a, b, b, c], [1, 2, 3, 4], [b, c, d, d, a])
    assert (gone_ids, gone, added) == ([2], [b], [d, d])  # the first of the two copies goes
    assert reads.difference([a], [7], [a]) == ([], [], [])
    assert reads.difference([], [], [a, b]) == ([], [], [a, b])
    assert reads.difference([a, a], [5, 6], []) == ([5, 6], [a, a], [])


def full_rewrite(conn: Connection, ids: list[str]) -> None:
    """The refresh as it was: a changed customer's rows all deleted and its fresh rows all inserted."""
    found = reads.read(conn, ids, with_state=True)
    lookback = found.lookback or read_model.DEFAULT_LOOKBACK
    fresh = {fact.customer_id: read_model.rows_of(fact, alerts, lookback) for fact, alerts in found.facts}
    changed = [i for i in ids if Counter(fresh.get(i, [])) != Counter(found.stored.get(i, []))]
    delta: Counter[Any] = Counter()
    for i in changed:
        for row in found.stored.get(i, []):
            delta.subtract(read_model.total_keys(row))
        for row in fresh.get(i, []):
            delta.update(read_model.total_keys(row))
    conn.execute(delete(F).where(F.c.customer_id.in_(changed)))
    read_model._insert_rows(conn, [row for i in changed for row in fresh.get(i, [])])
    read_model.add_totals(conn, delta)


def table(conn: Connection) -> tuple[list[Any], list[Any]]:
    rows = conn.execute(select(*(c for c in F.c if c.name != "id"))).all()
    totals = conn.execute(select(MetricTotal.__table__).where(MetricTotal.n != 0)).all()  # type: ignore[attr-defined]
    return sorted(map(tuple, rows), key=repr), sorted(map(tuple, totals), key=repr)


async def change_facts(database: Database, rng: random.Random, ids: list[str]) -> None:
    """New alerts and status changes, alerts gone, tiers changed, for a sample of the customers."""
    async with database.transaction() as session:
        for n, i in enumerate(rng.sample(ids, len(ids) // 3)):
            at = START + timedelta(days=10 * rng.randint(-22, 4))
            roll = rng.random()
            if roll < 0.4:
                session.add(
                    Alert(
                        customer_id=i, reason=rng.choice(("complaint", "risk_rise")),
                        rule_id=rng.choice((None, "rule-a")), severity="medium", status=AlertStatus.resolved,
                        first_triggered_at=at, last_triggered_at=at,
                        outcome=rng.choice((None, Outcome.saved, Outcome.churned)), control=rng.random() < 0.2,
                    )
                )  # fmt: skip
            elif roll < 0.6:
                status = rng.choice((outcomes.CHURNED, "active", "won_back"))
                session.add(StatusChange(event_id=f"{i}-new{n}", customer_id=i, status=status, at=at))
            elif roll < 0.8:
                await session.execute(delete(Alert).where(Alert.customer_id == i))
            else:
                await session.execute(
                    update(Customer).where(Customer.customer_id == i).values(tier=rng.choice(("gold", "bronze", None)))
                )


async def assert_refresh_writes_what_a_full_rewrite_wrote(database: Database, seed: int) -> None:
    await _seed_random(database, seed, customers=300)
    await rebuild(database)
    rng = random.Random(seed)
    async with database.sessions() as session:
        known = list((await session.execute(select(Customer.customer_id))).scalars())
    await change_facts(database, rng, known)
    samples = [rng.sample(known, k) for k in (1, 7, 60)] + [[*sorted(known), "r-unknown"]]

    def both(conn: Connection, ids: list[str]) -> tuple[Any, Any]:
        savepoint = conn.begin_nested()
        full_rewrite(conn, ids)
        expected = table(conn)
        savepoint.rollback()
        read_model.refresh(conn, ids)
        return table(conn), expected

    for ids in samples:
        async with database.transaction() as session:
            written, expected = await session.run_sync(lambda s, ids=ids: both(s.connection(), ids))
        assert written == expected
    async with database.sessions() as session:
        kept = await session.run_sync(lambda s: table(s.connection()))
    await rebuild(database)  # every customer was refreshed by the last sample: the one-shot rows
    async with database.sessions() as session:
        assert await session.run_sync(lambda s: table(s.connection())) == kept
    assert len(kept[0]) > 500 and len(kept[1]) > 50


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_refresh_leaves_the_rows_and_totals_of_a_full_rewrite_on_a_random_store(
    database: Database, seed: int
) -> None:
    await assert_refresh_writes_what_a_full_rewrite_wrote(database, seed)


async def assert_one_new_alert_rewrites_only_the_rows_it_changes(database: Database) -> None:
    await _seed_random(database, 1, customers=300)
    await rebuild(database)
    async with database.sessions() as session:
        ids = (await session.execute(select(F.c.customer_id, F.c.id))).all()
    by_customer: dict[str, set[int]] = {}
    for customer_id, row_id in ids:
        by_customer.setdefault(customer_id, set()).add(row_id)
    customer = max(by_customer, key=lambda i: len(by_customer[i]))
    before = by_customer[customer]
    async with database.transaction() as session:
        at = START - timedelta(days=20)
        session.add(
            Alert(
                customer_id=customer, reason="complaint", rule_id="rule-a", severity="medium",
                status=AlertStatus.resolved, first_triggered_at=at, last_triggered_at=at, outcome=Outcome.saved,
                control=False,
            )
        )  # fmt: skip
        await session.flush()
        await session.run_sync(lambda s: read_model.refresh(s.connection(), [customer]))
    async with database.sessions() as session:
        after = set((await session.execute(select(F.c.id).where(F.c.customer_id == customer))).scalars())
    assert after != before  # the alert changed some rows
    assert len(before & after) >= len(before) // 2  # most stayed as they were, ids and all


async def test_one_new_alert_rewrites_only_the_customer_s_rows_it_changes(database: Database) -> None:
    await assert_one_new_alert_rewrites_only_the_rows_it_changes(database)
