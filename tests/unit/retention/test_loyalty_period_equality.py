"""The period loyalty report and satisfaction-trap list, computed in SQL (the declining customers joined, the
trap list's orders narrowed to the satisfied), give what the pure typing (loyalty.classify) gives customer by
customer, on random stores whose order times sit on the period boundaries."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from servicekit.db import Database
from servicekit.reports import Period
from servicekit.tables import table_of
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports import loyalty, loyalty_queries
from services.retention.reports.models import ORDER, CustomerFact, FactEvent
from services.retention.reports.sql import Filters

BASE = datetime(2026, 1, 1, tzinfo=UTC)
PERIODS = [Period(date(2026, 3, 1), date(2026, 4, 1)), Period(date(2026, 2, 10), date(2026, 2, 17))]
THRESHOLDS = [
    loyalty.Thresholds(),
    loyalty.Thresholds(repeat_orders=1, min_tenure_days=30.5, decline_ratio=0.0, nps_promoter=7, csat_satisfied=3),
]
FILTERS = [
    Filters(),
    Filters(tiers=("gold",)),
    Filters(segments=("retail",), owners=("o1", "o2")),
    Filters(teams=("north",), tiers=("gold", "iron")),
]
STATUSES = ("active", "active", "won_back", "churned", "prospect")


def _store(rng: random.Random, customers: int) -> dict[str, list[dict[str, Any]]]:
    """Random rows; order times on a day grid (at midnight or noon) from 120 days before 2026-01-01 to April."""
    rows: dict[str, list[dict[str, Any]]] = {"customers": [], "scores": [], "facts": [], "events": []}
    for i in range(customers):
        cid = f"c{i:03d}"
        rows["customers"].append(
            {
                "customer_id": cid,
                "owner": rng.choice(("o1", "o2", "o3", None)),
                "segment": rng.choice(("retail", "b2b", None)),
                "status": rng.choice(STATUSES),
                "tier": rng.choice(("gold", None, None)),
                "version": 1,
                "first_seen": BASE,
                "erased_at": BASE if rng.random() < 0.05 else None,
                "updated_at": BASE,
            }
        )
        if rng.random() < 0.8:
            tier = rng.choice(("gold", "iron", "lead", None))
            rows["scores"].append(
                {"customer_id": cid, "churn_risk": 0.5, "value_tier": tier, "as_of": BASE, "updated_at": BASE}
            )
        times = [
            BASE + timedelta(days=rng.randint(-120, 100), hours=rng.choice((0, 12))) for _ in range(rng.randint(0, 8))
        ]
        for n, at in enumerate(times):
            rows["events"].append({"event_id": f"{cid}-{n}", "customer_id": cid, "kind": ORDER, "at": at})
        if rng.random() < 0.1:  # a survey answer is a fact event too; only orders count in the windows
            rows["events"].append({"event_id": f"{cid}-s", "customer_id": cid, "kind": "survey", "at": BASE})
        rows["facts"].append(
            {
                "customer_id": cid,
                "team": rng.choice(("north", "south", None)),
                "share_of_wallet": rng.choice((None, None, 0.2, 0.5, 0.9)),
                "orders": len(times) + rng.choice((0, 0, 1)),  # the counter may hold orders before the store's
                "first_order_at": min(times) if times else None,
                "nps": rng.choice((None, None, 3, 7, 9, 10)),
                "csat": rng.choice((None, 2, 3, 4, 5)),
                "updated_at": BASE,
            }
        )
    return rows


def _expected(
    rows: dict[str, list[dict[str, Any]]], period: Period, filters: Filters, t: loyalty.Thresholds
) -> list[dict[str, Any]]:
    """Per customer now matching the filters, by id: its loyalty from loyalty.classify."""
    scores = {s["customer_id"]: s["value_tier"] for s in rows["scores"]}
    facts = {f["customer_id"]: f for f in rows["facts"]}
    start, end = period.start_at, period.end_at
    prior_start = start - (end - start)
    out = []
    for c in sorted(rows["customers"], key=lambda c: c["customer_id"]):
        cid, fact = c["customer_id"], facts[c["customer_id"]]
        tier = c["tier"] or scores.get(cid)
        if c["status"] not in ("active", "won_back") or c["erased_at"] is not None:
            continue
        if (
            (filters.tiers and tier not in filters.tiers)
            or (filters.segments and c["segment"] not in filters.segments)
            or (filters.owners and c["owner"] not in filters.owners)
            or (filters.teams and fact["team"] not in filters.teams)
        ):
            continue
        orders = [e["at"] for e in rows["events"] if e["customer_id"] == cid and e["kind"] == ORDER]
        recent = sum(start <= at < end for at in orders)
        prior = sum(prior_start <= at < start for at in orders)
        first = fact["first_order_at"]
        behaviour = loyalty.Behaviour(
            orders=fact["orders"],
            tenure_days=(end - first).total_seconds() / 86400.0 if first else None,
            recent_orders=recent,
            prior_orders=prior,
            share_of_wallet=fact["share_of_wallet"],
        )
        typed = loyalty.classify(behaviour, loyalty.Attitude(fact["nps"], fact["csat"]), t)
        out.append(
            {
                "customer_id": cid,
                "owner": c["owner"],
                "segment": c["segment"],
                "tier": tier,
                "team": fact["team"],
                "orders": fact["orders"],
                "nps": fact["nps"],
                "csat": fact["csat"],
                "recent": recent,
                "prior": prior,
                "type": typed.type.value,
                "trap": typed.satisfaction_trap,
            }
        )
    return out


async def _fill(database: Database, rows: dict[str, list[dict[str, Any]]]) -> None:
    async with database.transaction() as session:
        for model, key in ((Customer, "customers"), (CustomerScore, "scores"), (CustomerFact, "facts")):
            await session.execute(insert(table_of(model)), rows[key])
        await session.execute(insert(table_of(FactEvent)), rows["events"])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_period_loyalty_and_traps_equal_the_pure_typing_of_every_customer(database: Database, seed: int) -> None:
    rng = random.Random(seed)
    rows = _store(rng, 150)
    await _fill(database, rows)
    checked_traps = 0
    for period in PERIODS:
        for t in THRESHOLDS:
            for filters in FILTERS:
                expected = _expected(rows, period, filters, t)
                async with database.sessions() as session:
                    result = await loyalty_queries.loyalty_distribution(
                        session=session, period=period, filters=filters, thresholds=t
                    )
                    page, total = await loyalty_queries.satisfaction_traps(
                        session=session, period=period, filters=filters, thresholds=t, limit=1000, offset=0
                    )
                    tail, tail_total = await loyalty_queries.satisfaction_traps(
                        session=session, period=period, filters=filters, thresholds=t, limit=3, offset=2
                    )
                counts = {k.value: 0 for k in loyalty.LoyaltyType}
                for e in expected:
                    counts[e["type"]] += 1
                assert result["counts"] == counts
                assert result["customers"] == len(expected)
                assert result["traps"] == sum(e["trap"] for e in expected)
                assert result["buyers"] == sum(e["orders"] >= 1 for e in expected)
                assert result["repeaters"] == sum(e["orders"] >= 2 for e in expected)
                traps = [{k: v for k, v in e.items() if k != "trap"} for e in expected if e["trap"]]
                assert (page, total) == (traps, len(traps))
                assert (tail, tail_total) == (traps[2:5], len(traps))
                checked_traps += len(traps)
    assert checked_traps > 0  # the stores do hold traps: the lists compared are not all empty


@pytest.mark.parametrize(
    ("days", "tenured"),
    [(180, True), (180 + 1e-6 / 86400, False), (30.5, True)],
    ids=["exactly", "a-microsecond-more", "fraction"],
)
async def test_tenure_is_compared_to_the_microsecond(database: Database, days: float, tenured: bool) -> None:
    """A first order exactly min_tenure_days before ``to`` is tenured (the pure typing's >=)."""
    end = datetime(2026, 4, 1, tzinfo=UTC)
    first = end - timedelta(days=180)
    async with database.transaction() as session:
        await session.execute(
            insert(table_of(CustomerFact)), [{"customer_id": "c1", "first_order_at": first, "updated_at": end}]
        )
    t = loyalty.Thresholds(min_tenure_days=days)
    async with database.sessions() as session:
        condition = loyalty_queries.tenured_by(CustomerFact.first_order_at, end, t)
        query = select(func.count()).select_from(table_of(CustomerFact)).where(condition)
        assert ((await session.execute(query)).scalar_one() == 1) is tenured
    assert ((end - first).total_seconds() / 86400.0 >= days) is tenured  # the pure typing agrees
