"""Retention metrics over a period: the facts of every customer, a page at a time, tallied (outcomes/core.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from services.retention.alerts.models import Alert
from services.retention.outcomes import core as outcomes
from services.retention.replica.models import Customer, CustomerScore, StatusChange

METRICS_PAGE = 500


async def metrics(
    *, session: AsyncSession, start: datetime, end: datetime, group_by: str | None, lookback: timedelta
) -> tuple[outcomes.Metrics, list[outcomes.Metrics]]:
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise Problem(
            422,
            "Invalid period",
            "to must be after from",
            code="validation",
            errors=[field_error("to", "must be after from")],
        )
    overall = outcomes.Tally(start, end, lookback)
    # Each rule's metrics count every customer, so its key must be known before the first page.
    pairs = await session.execute(select(Alert.rule_id, Alert.reason).distinct()) if group_by == "rule" else []
    rules = {rule_id or reason for rule_id, reason in pairs}
    groups = outcomes.GroupedTally(group_by, start, end, lookback, rules) if group_by else None
    after = ""
    # Bounded memory: the facts of METRICS_PAGE customers at a time, in customer id order (keyset paging).
    while page := await _metrics_page(session, after):
        async for fact, alerts in _facts_of(session, page):
            overall.add(fact, alerts)
            if groups is not None:
                groups.add(fact, alerts)
        after = page[-1]
    return overall.result(), groups.result() if groups is not None else []


async def _metrics_page(session: AsyncSession, after: str) -> list[str]:
    """The next METRICS_PAGE customer ids (after ``after``) known to any table the metrics read.

    Each table gives at most a page through its customer_id index; the union of those is cut to a page.
    """
    branches = [
        select(column.label("customer_id"))
        .where(column > after)
        .group_by(column)
        .order_by(column)
        .limit(METRICS_PAGE)
        .subquery()
        for column in (Customer.customer_id, CustomerScore.customer_id, StatusChange.customer_id, Alert.customer_id)
    ]
    ids = union(*(select(b.c.customer_id) for b in branches)).subquery()
    query = select(ids.c.customer_id).order_by(ids.c.customer_id).limit(METRICS_PAGE)
    return list((await session.execute(query)).scalars())


async def _facts_of(
    session: AsyncSession, ids: list[str]
) -> AsyncIterator[tuple[outcomes.CustomerFact, list[outcomes.AlertFact]]]:
    replicas = {
        c.customer_id: c
        for c in (await session.execute(select(Customer).where(Customer.customer_id.in_(ids)))).scalars()
    }
    scores = dict(
        (
            await session.execute(
                select(CustomerScore.customer_id, CustomerScore.value_tier).where(CustomerScore.customer_id.in_(ids))
            )
        ).all()
    )
    changes: dict[str, list[tuple[datetime, str]]] = {}
    for customer_id, at, status in await session.execute(
        select(StatusChange.customer_id, StatusChange.at, StatusChange.status).where(StatusChange.customer_id.in_(ids))
    ):
        changes.setdefault(customer_id, []).append((as_utc(at), status))
    alerts: dict[str, list[outcomes.AlertFact]] = {}
    for r in await session.execute(
        select(
            Alert.customer_id, Alert.reason, Alert.first_triggered_at, Alert.rule_id, Alert.outcome, Alert.control
        ).where(Alert.customer_id.in_(ids))
    ):
        alerts.setdefault(r.customer_id, []).append(
            outcomes.AlertFact(
                customer_id=r.customer_id,
                reason=r.reason,
                first_triggered_at=as_utc(r.first_triggered_at),
                rule_id=r.rule_id,
                outcome=r.outcome,
                control=bool(r.control),
            )
        )
    for i in ids:
        replica = replicas.get(i)
        fact = outcomes.CustomerFact(
            customer_id=i,
            tier=(replica.tier if replica else None) or scores.get(i),
            segment=replica.segment if replica else None,
            first_seen=as_utc(replica.first_seen) if replica else None,
            status_changes=tuple(changes.get(i, ())),
        )
        yield fact, alerts.get(i, [])
