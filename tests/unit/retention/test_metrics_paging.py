"""/retention/metrics' exact path (the reference of its read model, and its answer while the read model
was built with another look-back) counts quiet customers in SQL, reads the others a page at a time, and
adds up the same numbers as all at once."""

import random
from dataclasses import asdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.types import as_utc
from services.retention.alerts.models import Alert
from services.retention.outcomes import core as outcomes
from services.retention.outcomes import service
from services.retention.replica.models import Customer, CustomerScore, StatusChange
from tests.unit.retention.events import T0, complaint, created, score, status_changed
from tests.unit.retention.test_api_loop import feed

START, END, LOOKBACK = T0 - timedelta(days=1), T0 + timedelta(days=30), timedelta(days=180)


async def _everything_at_once(database: Database, group_by: str | None) -> tuple[dict, list[dict]]:
    """The former implementation: every table read whole, then one computation (the reference)."""
    async with database.sessions() as session:
        replicas = {c.customer_id: c for c in (await session.execute(select(Customer))).scalars()}
        scores = dict((await session.execute(select(CustomerScore.customer_id, CustomerScore.value_tier))).all())
        changes: dict[str, list] = {}
        for customer_id, at, status in await session.execute(
            select(StatusChange.customer_id, StatusChange.at, StatusChange.status)
        ):
            changes.setdefault(customer_id, []).append((as_utc(at), status))
        rows = (await session.execute(select(Alert))).scalars().all()
    alerts = [
        outcomes.AlertFact(a.customer_id, a.reason, as_utc(a.first_triggered_at), a.rule_id, a.outcome, bool(a.control))
        for a in rows
    ]
    ids = set(replicas) | set(scores) | set(changes) | {a.customer_id for a in alerts}
    facts = [
        outcomes.CustomerFact(
            i,
            tier=(replicas[i].tier if i in replicas else None) or scores.get(i),
            segment=replicas[i].segment if i in replicas else None,
            first_seen=as_utc(replicas[i].first_seen) if i in replicas else None,
            status_changes=tuple(changes.get(i, ())),
        )
        for i in sorted(ids)
    ]
    overall = outcomes.compute(facts, alerts, start=START, end=END, lookback=LOOKBACK)
    groups = (
        outcomes.grouped(facts, alerts, group_by=group_by, start=START, end=END, lookback=LOOKBACK) if group_by else []
    )
    return asdict(overall), [asdict(g) for g in groups]


@pytest.mark.parametrize("group_by", [None, "tier", "segment", "rule"])
async def test_paged_metrics_equal_the_whole_table_computation_and_read_at_most_a_page(
    database: Database, monkeypatch: pytest.MonkeyPatch, group_by: str | None
) -> None:
    await feed(
        database,
        *(
            created(f"c-{i}", segment="enterprise" if i % 3 else "smb", tier="gold" if i % 2 else None)
            for i in range(7)
        ),
        complaint("c-1"),
        complaint("c-4", severity="critical"),
        complaint("c-6"),
        score("c-8", 0.9, tier="platinum"),  # known only from a score
        complaint("c-9"),  # known only from an alert
    )
    await feed(database, status_changed("c-1", days=3), status_changed("c-2", days=5), status_changed("c-9", days=6))
    monkeypatch.setattr(service, "METRICS_PAGE", 2)
    pages: list[list[str]] = []
    original = service._facts_of

    def spy(session, ids):  # type: ignore[no-untyped-def]
        pages.append(list(ids))
        return original(session, ids)

    monkeypatch.setattr(service, "_facts_of", spy)

    async with database.sessions() as session:
        overall, groups = await service.exact_metrics(
            session=session, start=START, end=END, group_by=group_by, lookback=LOOKBACK
        )

    assert (asdict(overall), [asdict(g) for g in groups]) == await _everything_at_once(database, group_by)
    assert overall.customers >= 7 and overall.churned >= 2  # the data exercises the numbers
    assert groups or group_by is None
    # Facts are read only for the customers alerted or churned within the period, once each, a page at a time.
    async with database.sessions() as session:
        alerted = set((await session.execute(select(Alert.customer_id, Alert.first_triggered_at))).all())
        changes = set(
            (await session.execute(select(StatusChange.customer_id, StatusChange.at, StatusChange.status))).all()
        )
    eventful = {c for c, at in alerted if START <= as_utc(at) < END} | {
        c for c, at, status in changes if status == outcomes.CHURNED and START <= as_utc(at) < END
    }
    read = [i for page in pages for i in page]
    assert max(len(page) for page in pages) == 2 and sorted(read) == sorted(eventful)
    assert {"c-1", "c-2", "c-4", "c-6", "c-9"} <= eventful


async def _seed_random(database: Database, seed: int, customers: int) -> None:
    """A random store: replica rows (some first seen at or after the end, some missing), scores, status
    changes and alerts on a coarse grid of days (so ties, and changes at the very start, happen) before,
    within and after the period, with outcomes and controls."""
    rng = random.Random(seed)

    def day() -> datetime:
        return START + timedelta(days=10 * rng.randint(-22, 4))

    rows: list[object] = []
    for n in range(customers):
        i = f"r-{n:04d}"
        if rng.random() < 0.85:
            rows.append(
                Customer(
                    customer_id=i,
                    segment=rng.choice(("enterprise", "smb", "", None)),
                    tier=rng.choice(("gold", "silver", "", None, None)),
                    first_seen=rng.choice((day(), day(), day(), END)),
                )
            )
        if rng.random() < 0.6:
            rows.append(
                CustomerScore(customer_id=i, churn_risk=rng.random(), value_tier=rng.choice(("platinum", "", None)))
            )
        for k in range(rng.choice((0, 0, 1, 2, 3))):
            status = rng.choice((outcomes.CHURNED, outcomes.CHURNED, "active", "dormant", "won_back"))
            rows.append(StatusChange(event_id=f"{i}-s{k}", customer_id=i, status=status, at=day()))
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            at = day()
            rows.append(
                Alert(
                    customer_id=i,
                    reason=rng.choice(("complaint", "risk_rise", "inactive")),
                    rule_id=rng.choice((None, "rule-a", "rule-b")),
                    severity="medium",
                    status="resolved",
                    first_triggered_at=at,
                    last_triggered_at=at,
                    outcome=rng.choice((None, None, outcomes.SAVED, outcomes.CHURNED, "lost_contact")),
                    control=rng.random() < 0.2,
                )
            )
    async with database.transaction() as session:
        session.add_all(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("group_by", [None, "tier", "segment", "rule"])
async def test_sql_counted_metrics_equal_the_per_customer_computation_on_a_random_store(
    database: Database, monkeypatch: pytest.MonkeyPatch, group_by: str | None, seed: int
) -> None:
    await _seed_random(database, seed, customers=300)
    monkeypatch.setattr(service, "METRICS_PAGE", 37)

    async with database.sessions() as session:
        overall, groups = await service.exact_metrics(
            session=session, start=START, end=END, group_by=group_by, lookback=LOOKBACK
        )

    assert (asdict(overall), [asdict(g) for g in groups]) == await _everything_at_once(database, group_by)
    assert overall.customers > 100 and overall.churned > 5 and overall.alerted_customers > 5
    assert overall.churned_with_warning > 0 and overall.control.alerts > 0
