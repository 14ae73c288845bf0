"""/retention/metrics reads a page of customers at a time and adds up the same numbers as all at once."""

from dataclasses import asdict
from datetime import timedelta

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
    pages: list[int] = []
    original = service._facts_of

    def spy(session, ids):  # type: ignore[no-untyped-def]
        pages.append(len(ids))
        return original(session, ids)

    monkeypatch.setattr(service, "_facts_of", spy)

    async with database.sessions() as session:
        overall, groups = await service.metrics(
            session=session, start=START, end=END, group_by=group_by, lookback=LOOKBACK
        )

    assert (asdict(overall), [asdict(g) for g in groups]) == await _everything_at_once(database, group_by)
    assert overall.customers >= 7 and overall.churned >= 2  # the data exercises the numbers
    assert groups or group_by is None
    assert max(pages) == 2 and sum(pages) == 9  # c-0..c-6, c-8, c-9 once each, never more than a page at a time
