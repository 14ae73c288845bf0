"""Retention metrics over a period: from the read model's monthly totals (outcomes/totals.py) when it was
built with the look-back asked for; else exactly as before, from the facts: quiet customers counted in SQL,
the facts of the others a page at a time, tallied (outcomes/core.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, String, and_, case, func, literal, or_, select, union, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from services.retention.alerts.models import Alert
from services.retention.outcomes import core as outcomes
from services.retention.outcomes import read_model, totals
from services.retention.replica.models import Customer, CustomerScore, StatusChange

METRICS_PAGE = 1000


async def metrics(
    *, session: AsyncSession, start: datetime, end: datetime, group_by: str | None, lookback: timedelta
) -> tuple[outcomes.Metrics, list[outcomes.Metrics]]:
    start, end = _period(start, end)
    built_with = await session.run_sync(lambda s: read_model.lookback_of(s.connection()))
    if built_with == lookback:
        return await totals.metrics(session, start, end, group_by)
    # Built with another look-back (the setting changed since): exact, from the facts, until rebuilt.
    return await exact_metrics(session=session, start=start, end=end, group_by=group_by, lookback=lookback)


def _period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise Problem(
            422,
            "Invalid period",
            "to must be after from",
            code="validation",
            errors=[field_error("to", "must be after from")],
        )
    return start, end


async def exact_metrics(
    *, session: AsyncSession, start: datetime, end: datetime, group_by: str | None, lookback: timedelta
) -> tuple[outcomes.Metrics, list[outcomes.Metrics]]:
    """The metrics from the facts themselves (the reference the read model is tested against)."""
    start, end = _period(start, end)
    overall = outcomes.Tally(start, end, lookback)
    # Each rule's metrics count every customer, so its key must be known before the first page.
    pairs = await session.execute(select(Alert.rule_id, Alert.reason).distinct()) if group_by == "rule" else []
    rules = {rule_id or reason for rule_id, reason in pairs}
    groups = outcomes.GroupedTally(group_by, start, end, lookback, rules) if group_by else None
    # Quiet customers (no alert first triggered, no churn within the period) only add to the population:
    # counted in SQL, per tier or segment when grouped by one.
    for key, population in await session.execute(_quiet_population(start, end, group_by)):
        overall.add_quiet(int(population or 0))
        if groups is not None:
            groups.add_quiet(key if group_by in ("tier", "segment") else None, int(population or 0))
    # The others: their facts, METRICS_PAGE customers at a time (bounded memory), tallied by the pure core.
    ids = list((await session.execute(_eventful(start, end).order_by("customer_id"))).scalars())
    for i in range(0, len(ids), METRICS_PAGE):
        async for fact, alerts in _facts_of(session, ids[i : i + METRICS_PAGE]):
            overall.add(fact, alerts)
            if groups is not None:
                groups.add(fact, alerts)
    return overall.result(), groups.result() if groups is not None else []


def _eventful(start: datetime, end: datetime) -> Select[tuple[str]]:
    """Ids of the customers with an alert first triggered or a churn within [start, end)."""
    alerted = select(Alert.customer_id.label("customer_id")).where(
        Alert.first_triggered_at >= start, Alert.first_triggered_at < end
    )
    churned = select(StatusChange.customer_id.label("customer_id")).where(
        StatusChange.status == outcomes.CHURNED, StatusChange.at >= start, StatusChange.at < end
    )
    ids = union(alerted, churned).subquery()
    return select(ids.c.customer_id)


def _quiet_population(start: datetime, end: datetime, group_by: str | None) -> Select[tuple[str | None, int]]:
    """(tier or segment key, how many of its quiet customers are in the population) per key.

    A customer is known to any table the metrics read; in the population when first seen before ``end``
    (or never seen in the replica) and not churned at ``start``: the status of their latest change before
    ``start`` (the greatest status among changes at that same time, as outcomes.status_at orders them).
    """
    # Every replica row, and the few ids known only to the other tables: each of those is first narrowed to
    # the ids the replica lacks (an anti-join on its key), so only that remainder needs making distinct.
    replica = select(Customer.customer_id.label("customer_id"))
    others = union(
        *(
            select(c.label("customer_id")).where(
                ~select(Customer.customer_id).where(Customer.customer_id == c).exists()
            )
            for c in (CustomerScore.customer_id, StatusChange.customer_id, Alert.customer_id)
        )
    ).subquery()
    known = union_all(replica, select(others.c.customer_id)).subquery()
    # Churned at the start: a change to churned before it with no later change before it (nor one at the
    # same moment with a greater status).
    later = StatusChange.__table__.alias("later")
    churned_at_start = (
        select(StatusChange.customer_id)
        .where(
            StatusChange.status == outcomes.CHURNED,
            StatusChange.at < start,
            ~select(later.c.id)
            .where(
                later.c.customer_id == StatusChange.customer_id,
                later.c.at < start,
                or_(
                    later.c.at > StatusChange.at,
                    and_(later.c.at == StatusChange.at, later.c.status > StatusChange.status),
                ),
            )
            .exists(),
        )
        .distinct()
        .subquery()
    )
    eventful = _eventful(start, end).subquery()
    in_population = or_(Customer.first_seen.is_(None), Customer.first_seen < end) & churned_at_start.c.customer_id.is_(
        None
    )
    population = func.sum(case((in_population, 1), else_=0))
    if group_by == "tier":
        key: ColumnElement[str | None] = func.coalesce(
            func.nullif(Customer.tier, ""), func.nullif(CustomerScore.value_tier, ""), outcomes.UNKNOWN
        )
    elif group_by == "segment":
        key = func.coalesce(func.nullif(Customer.segment, ""), outcomes.UNKNOWN)
    else:
        key = literal(None, String)
    query = (
        select(key.label("key"), population)
        .select_from(known)
        .outerjoin(Customer, Customer.customer_id == known.c.customer_id)
        .outerjoin(churned_at_start, churned_at_start.c.customer_id == known.c.customer_id)
        .outerjoin(eventful, eventful.c.customer_id == known.c.customer_id)
        .where(eventful.c.customer_id.is_(None))
    )
    if group_by == "tier":
        query = query.outerjoin(CustomerScore, CustomerScore.customer_id == known.c.customer_id)
    return query.group_by(key) if group_by in ("tier", "segment") else query


async def _facts_of(
    session: AsyncSession, ids: list[str]
) -> AsyncIterator[tuple[outcomes.CustomerFact, list[outcomes.AlertFact]]]:
    replicas = {
        r.customer_id: r
        for r in await session.execute(
            select(Customer.customer_id, Customer.tier, Customer.segment, Customer.first_seen).where(
                Customer.customer_id.in_(ids)
            )
        )
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
