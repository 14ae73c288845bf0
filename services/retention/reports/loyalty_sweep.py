"""Loyalty as of today: the daily sweep that types every customer into customer_loyalty, and the reads of
those rows (the distribution and the satisfaction traps "as of today").

The sweep types the customers then (active or won back, not erased) as of the start of the day (UTC), with
the trend windows of ``loyalty_trend_window_days`` whole days before it: the period typing of
loyalty_queries over ``[day - window, day)``, so both reports agree for that period. It is set-based (one
DELETE and one INSERT ... SELECT) and claimed per day: the first sweep of a day inserts the day's row in
loyalty_sweeps in the same transaction, a second one (another replica, a restart) finds it and does
nothing; a failed sweep rolls back its claim with its rows. Definitions: docs/reports.md, "Loyalty as of
today". Never commits (the caller's transaction does).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.clock import utc_now
from servicekit.reports import Period
from servicekit.sql import dialect_insert
from services.retention.reports import loyalty
from services.retention.reports.loyalty_queries import loyalty_features
from services.retention.reports.models import CustomerLoyalty, LoyaltySweep
from services.retention.reports.sql import CURRENT_TIER, IS_CUSTOMER, C, F, Filters, S, flag

L = CustomerLoyalty.__table__  # type: ignore[attr-defined]
W = LoyaltySweep.__table__  # type: ignore[attr-defined]


def window_days(thresholds: loyalty.Thresholds) -> int:
    """The trend window in whole days (at least one)."""
    return max(1, round(thresholds.trend_window_days))


def sweep_period(day: date, thresholds: loyalty.Thresholds) -> Period:
    """Pure: the period whose typing is the loyalty as of the start of ``day``."""
    return Period(day - timedelta(days=window_days(thresholds)), day)


async def sweep(session: AsyncSession, *, day: date, thresholds: loyalty.Thresholds) -> int | None:
    """Type every customer as of the start of ``day``; the number typed, or None when that day's sweep
    was done (or is being done) already."""
    as_of = datetime.combine(day, time.min, tzinfo=UTC)
    claim = dialect_insert(session)(W).on_conflict_do_nothing(index_elements=[W.c.as_of])
    claimed = await session.execute(
        claim.values(as_of=as_of, customers=0, window_days=window_days(thresholds), finished_at=utc_now()).returning(
            W.c.as_of
        )
    )
    if claimed.first() is None:
        return None
    rows = loyalty_features(session, sweep_period(day, thresholds), Filters(), thresholds).subquery()
    typed = select(
        rows.c.customer_id,
        rows.c.type,
        rows.c.trap == 1,
        rows.c.orders,
        rows.c.orders >= 1,
        rows.c.orders >= 2,
        rows.c.recent,
        rows.c.prior,
        rows.c.nps,
        rows.c.csat,
        literal(as_of, L.c.as_of.type),
    )
    columns = ["customer_id", "type", "trap", "orders", "buyer", "repeater"]
    columns += ["recent_orders", "prior_orders", "nps", "csat", "as_of"]
    await session.execute(delete(L))
    await session.execute(insert(L).from_select(columns, typed))
    count = int((await session.execute(select(func.count()).select_from(L))).scalar_one())
    await session.execute(W.update().where(W.c.as_of == as_of).values(customers=count, finished_at=utc_now()))
    # Only the latest few claims matter; older ones are history of no use.
    await session.execute(delete(W).where(W.c.as_of < as_of - timedelta(days=31)))
    return count


async def latest_sweep(session: AsyncSession) -> tuple[datetime, int] | None:
    """The as-of instant of the rows in customer_loyalty and the window in days; None before the first sweep."""
    row = (await session.execute(select(W.c.as_of, W.c.window_days).order_by(W.c.as_of.desc()).limit(1))).first()
    return (row.as_of, int(row.window_days)) if row is not None else None


def _typed(filters: Filters) -> tuple[Any, list[Any]]:
    """customer_loyalty joined to the customers now (still customers, not erased) with the filters on their
    current values; the score and facts joined only when a filter needs them."""
    source = L.join(C, C.c.customer_id == L.c.customer_id)
    if filters.tiers:
        source = source.outerjoin(S, S.c.customer_id == L.c.customer_id)
    if filters.teams:
        source = source.outerjoin(F, F.c.customer_id == L.c.customer_id)
    where = [C.c.status.in_(IS_CUSTOMER), C.c.erased_at.is_(None)]
    where += filters.on(CURRENT_TIER, C.c.segment, C.c.owner, F.c.team)
    return source, where


async def distribution_today(session: AsyncSession, filters: Filters) -> dict[str, Any]:
    """Customers per loyalty type as of the latest sweep, the traps and the repeat rate's counts."""
    source, where = _typed(filters)
    query = (
        select(
            L.c.type,
            func.count().label("customers"),
            func.sum(flag(L.c.trap == true())).label("traps"),
            func.sum(flag(L.c.buyer == true())).label("buyers"),
            func.sum(flag(L.c.repeater == true())).label("repeaters"),
        )
        .select_from(source)
        .where(*where)
        .group_by(L.c.type)
    )
    counts = {t.value: 0 for t in loyalty.LoyaltyType}
    totals = {"customers": 0, "traps": 0, "buyers": 0, "repeaters": 0}
    for row in (await session.execute(query)).mappings():
        counts[row["type"]] = int(row["customers"])
        for key in totals:
            totals[key] += int(row[key] or 0)
    return {**totals, "counts": counts}


async def traps_today(
    session: AsyncSession, filters: Filters, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the satisfaction traps as of the latest sweep, by customer id, and how many in all."""
    source, where = _typed(filters)
    if not filters.tiers:
        source = source.outerjoin(S, S.c.customer_id == L.c.customer_id)
    if not filters.teams:
        source = source.outerjoin(F, F.c.customer_id == L.c.customer_id)
    where.append(L.c.trap == true())
    total = int((await session.execute(select(func.count()).select_from(source).where(*where))).scalar_one())
    query = (
        select(
            L.c.customer_id,
            C.c.owner,
            C.c.segment,
            CURRENT_TIER.label("tier"),
            F.c.team,
            L.c.type,
            L.c.nps,
            L.c.csat,
            L.c.orders,
            L.c.recent_orders,
            L.c.prior_orders,
        )
        .select_from(source)
        .where(*where)
        .order_by(L.c.customer_id)
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in (await session.execute(query)).mappings()], total
