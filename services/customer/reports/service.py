"""Churn-situation and churn-reason reports, computed by SQL aggregation over the status history.

Dating (docs/reports.md): a churn counts on its churn day (``churned_at``), every other status change
on the moment it was recorded (``changed_at``). A customer's status at the instant ``t`` is that of its
latest history row dated before ``t``; "a customer" at ``t`` means status active or won_back.
Filters (segment, owner, team, tier) use the customer's current values; the tier is the account-managed
one (a tier or value_tier attribute naming a value tier), else the one last scored.
No I/O besides the queries; never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from contracts.common import CustomerStatus
from contracts.customer import TEAM_ATTRIBUTE, TIER_ATTRIBUTES, VALUE_TIERS
from servicekit.reports import Period, days_between, month_of
from services.customer.customers.attributes import STRING
from services.customer.customers.models import Customer, CustomerAttribute
from services.customer.status.lifecycle import REASON_FACTS, ChurnReason
from services.customer.status.models import StatusChange

C = Customer.__table__  # type: ignore[attr-defined]
H = StatusChange.__table__  # type: ignore[attr-defined]
A = CustomerAttribute.__table__  # type: ignore[attr-defined]
IS_CUSTOMER = (CustomerStatus.active.value, CustomerStatus.won_back.value)
CHURNED = CustomerStatus.churned.value
WON_BACK = CustomerStatus.won_back.value
ACTIVE = CustomerStatus.active.value

SIDE = case({r.value: f.side.value for r, f in REASON_FACTS.items()}, value=H.c.reason, else_="unknown")
VOLUNTARY = case({r.value: f.voluntary for r, f in REASON_FACTS.items()}, value=H.c.reason, else_=True)


def _managed_tier(key: str) -> ColumnElement[Any]:
    # The attribute's value when it names a value tier, in any case (as contracts.customer.tier_attribute).
    a = A.alias(f"a_{key}")
    value = func.lower(a.c.value)
    return (
        select(value)
        .where(a.c.customer_id == C.c.id, a.c.key == key, a.c.type == STRING, value.in_(VALUE_TIERS))
        .scalar_subquery()
    )


# The customer's value tier: account-managed (tier, else value_tier attribute), else as scored.
TIER = func.coalesce(*(_managed_tier(k) for k in TIER_ATTRIBUTES), C.c.scored_tier)


@dataclass(frozen=True, slots=True)
class Filters:
    segments: Sequence[str] = ()
    owners: Sequence[str] = ()
    teams: Sequence[str] = ()  # the customer's ``team`` attribute
    tiers: Sequence[str] = ()  # the customer's value tier (TIER)
    reasons: Sequence[ChurnReason] = ()

    def customer_where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.segments:
            where.append(C.c.segment.in_(list(self.segments)))
        if self.owners:
            where.append(C.c.owner.in_(list(self.owners)))
        if self.teams:  # through the attribute filter's index (key, value)
            where.append(
                C.c.id.in_(
                    select(A.c.customer_id).where(
                        A.c.key == TEAM_ATTRIBUTE, A.c.type == STRING, A.c.value.in_(list(self.teams))
                    )
                )
            )
        if self.tiers:
            where.append(TIER.in_(list(self.tiers)))
        return where

    def reason_where(self) -> list[ColumnElement[bool]]:
        return [H.c.reason.in_([r.value for r in self.reasons])] if self.reasons else []


def _group_column(group_by: str | None) -> ColumnElement[Any]:
    if group_by is None:
        return literal("all")
    return {"segment": C.c.segment, "owner": C.c.owner, "tier": TIER, "reason": H.c.reason}[group_by]


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _dated_before(h: Any, instant: datetime) -> ColumnElement[bool]:
    """The history row ``h`` is dated before ``instant`` (a churn on its day, any other change when recorded)."""
    return or_(
        and_(h.c.status == CHURNED, h.c.churned_at < instant.date()),
        and_(h.c.status != CHURNED, h.c.changed_at < instant),
    )


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


# ---- churn situation ---------------------------------------------------------------------------------


async def churn_situation(
    *, session: AsyncSession, period: Period, filters: Filters, group_by: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Per group: customers at start and end, retained, new, lost, won back (see docs/reports.md)."""
    start, end = period.start_at, period.end_at
    h = H.alias("h_event")
    became_customer = and_(
        h.c.status == ACTIVE,
        or_(h.c.previous_status.is_(None), h.c.previous_status == CustomerStatus.prospect.value),
        h.c.changed_at >= start,
        h.c.changed_at < end,
    )
    lost = and_(h.c.status == CHURNED, h.c.churned_at >= period.first, h.c.churned_at < period.end)
    won_back = and_(
        h.c.status == WON_BACK, h.c.previous_status == CHURNED, h.c.changed_at >= start, h.c.changed_at < end
    )

    # One pass over the history: per customer, whether its latest row dated before the start (and before
    # the end) makes it a customer, and its counts of events in the period. The latest row's flag rides on
    # its id: max(id * 2 + flag) is the latest row's, and its last bit is that row's flag.
    def latest_flag(instant: datetime) -> ColumnElement[Any]:
        return func.max(case((_dated_before(h, instant), h.c.id * 2 + _flag(h.c.status.in_(IS_CUSTOMER)))))

    history = (
        select(
            h.c.customer_id.label("customer_id"),
            latest_flag(start).label("start_key"),
            latest_flag(end).label("end_key"),
            func.sum(_flag(became_customer)).label("new"),
            func.sum(_flag(lost)).label("lost"),
            func.sum(_flag(won_back)).label("won_back"),
        )
        .group_by(h.c.customer_id)
        .subquery("history")
    )
    group = _group_column(group_by if group_by != "reason" else None)
    # A customer without history adds nothing but to its group's existence; every history row's customer
    # exists (a foreign key): without a filter or a group on the customer, the history alone answers.
    by_customer = bool(filters.customer_where()) or group_by in ("segment", "owner", "tier")
    at_start = func.coalesce(history.c.start_key, 0) % 2 == 1
    at_end = func.coalesce(history.c.end_key, 0) % 2 == 1
    per_customer = (
        select(
            group.label("grp"),
            _flag(at_start).label("at_start"),
            _flag(at_end).label("at_end"),
            _flag(and_(at_start, at_end)).label("retained"),
            func.coalesce(history.c.new, 0).label("new"),
            func.coalesce(history.c.lost, 0).label("lost"),
            func.coalesce(history.c.won_back, 0).label("won_back"),
        )
        .select_from(C.outerjoin(history, history.c.customer_id == C.c.id) if by_customer else history)
        .where(*filters.customer_where())
        .subquery()
    )
    p = per_customer.c
    query = (
        select(
            p.grp,
            func.sum(p.at_start).label("customers_at_start"),
            func.sum(p.at_end).label("customers_at_end"),
            func.sum(p.retained).label("retained"),
            func.sum(p.new).label("new"),
            func.sum(p.lost).label("lost"),
            func.sum(p.won_back).label("won_back"),
        )
        .group_by(p.grp)
        .order_by(p.grp.is_(None), p.grp)
    )
    if not by_customer:  # one group, "all", there when any customer is (with zeros if none has history)
        found = (await session.execute(query)).mappings().first()
        row = dict(found) if found is not None else None
        if row is None and (await session.execute(select(C.c.id).limit(1))).first() is not None:
            measures = ("customers_at_start", "customers_at_end", "retained", "new", "lost", "won_back")
            row = {"grp": "all", **dict.fromkeys(measures, 0)}
        page = [row] if row is not None and offset == 0 and limit > 0 else []
        return [{k: (v if k == "grp" else int(v or 0)) for k, v in r.items()} for r in page], int(row is not None)
    # The page and the number of groups from one pass: the count travels with each row.
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    rows = (await session.execute(counted)).mappings().all()
    if rows:
        total = int(rows[0]["_total"])
    else:  # past the end: the number of groups needs its own count
        total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    return [{k: (v if k == "grp" else int(v or 0)) for k, v in r.items() if k != "_total"} for r in rows], int(total)


# ---- churn reasons -----------------------------------------------------------------------------------


def _churns_in(period: Period, filters: Filters) -> list[ColumnElement[bool]]:
    return [
        H.c.status == CHURNED,
        H.c.churned_at >= period.first,
        H.c.churned_at < period.end,
        *filters.customer_where(),
        *filters.reason_where(),
    ]


async def churn_reasons(
    *, session: AsyncSession, period: Period, filters: Filters
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Churns in the period by reason, by side and by voluntariness (counts; shares are the router's)."""
    base = select().select_from(H.join(C, C.c.id == H.c.customer_id)).where(*_churns_in(period, filters))
    by_reason = (
        await session.execute(
            base.add_columns(H.c.reason.label("reason"), func.count().label("churned"))
            .group_by(H.c.reason)
            .order_by(func.count().desc(), H.c.reason)
        )
    ).mappings()
    by_side = (
        await session.execute(
            base.add_columns(SIDE.label("side"), func.count().label("churned")).group_by(SIDE).order_by(SIDE)
        )
    ).mappings()
    by_voluntary = (
        await session.execute(
            base.add_columns(VOLUNTARY.label("voluntary"), func.count().label("churned"))
            .group_by(VOLUNTARY)
            .order_by(VOLUNTARY.desc())
        )
    ).mappings()
    return [dict(r) for r in by_reason], [dict(r) for r in by_side], [dict(r) for r in by_voluntary]


async def reason_mix(
    *, session: AsyncSession, period: Period, filters: Filters, group_by: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Churns in the period per (group, reason), with the group's total churns, ordered by group."""
    # Each churn's group first, then the counts: a group that is itself a subquery (the tier) is grouped
    # by as a plain column.
    churns = (
        select(_group_column(group_by).label("grp"), H.c.reason.label("reason"))
        .select_from(H.join(C, C.c.id == H.c.customer_id))
        .where(*_churns_in(period, filters))
        .subquery("churns")
    )
    query = select(churns.c.grp, churns.c.reason, func.count().label("churned")).group_by(churns.c.grp, churns.c.reason)
    cells = query.subquery()
    totals = select(cells.c.grp, func.sum(cells.c.churned).label("group_churned")).group_by(cells.c.grp).subquery()
    ordered = (
        select(cells.c.grp, cells.c.reason, cells.c.churned, totals.c.group_churned)
        .join(totals, or_(totals.c.grp == cells.c.grp, and_(totals.c.grp.is_(None), cells.c.grp.is_(None))))
        .order_by(cells.c.grp.is_(None), cells.c.grp, cells.c.churned.desc(), cells.c.reason)
    )
    total = (await session.execute(select(func.count()).select_from(cells))).scalar_one()
    rows = (await session.execute(ordered.limit(limit).offset(offset))).mappings().all()
    return [dict(r) for r in rows], int(total)


# ---- win-back ----------------------------------------------------------------------------------------


async def win_back(
    *, session: AsyncSession, period: Period, filters: Filters, group_by: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Churns in the period and, per group, how many were won back before the period ended, and how fast.

    A churn is won back by the customer's next ``won_back`` change recorded before ``to``.
    """
    w = H.alias("h_won")
    won_at = (
        select(func.min(w.c.changed_at))
        .where(
            w.c.customer_id == H.c.customer_id,
            w.c.id > H.c.id,
            w.c.status == WON_BACK,
            w.c.changed_at < period.end_at,
        )
        .scalar_subquery()
    )
    group = _group_column(group_by)
    per_churn = (
        select(group.label("grp"), won_at.label("won_at"), H.c.churned_at.label("churned_at"))
        .select_from(H.join(C, C.c.id == H.c.customer_id))
        .where(*_churns_in(period, filters))
        .subquery()
    )
    days = days_between(per_churn.c.won_at, per_churn.c.churned_at, _dialect(session))
    query = (
        select(
            per_churn.c.grp,
            func.count().label("churned"),
            func.count(per_churn.c.won_at).label("won_back"),
            func.avg(days).label("avg_days_to_win_back"),
            func.min(days).label("min_days_to_win_back"),
            func.max(days).label("max_days_to_win_back"),
        )
        .group_by(per_churn.c.grp)
        .order_by(per_churn.c.grp.is_(None), per_churn.c.grp)
    )
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.limit(limit).offset(offset))).mappings().all()
    return [dict(r) for r in rows], int(total)


# ---- cohorts -----------------------------------------------------------------------------------------


async def cohorts(*, session: AsyncSession, period: Period, filters: Filters) -> list[tuple[str, str | None, int]]:
    """(cohort month, first-churn month or None, customers) for customers who first became customers
    (their first ``active`` change) in the period, grouped by (cohort month, month of their first churn).
    """
    dialect = _dialect(session)
    # One pass over the history: per customer, its first active change and its first churn day.
    f = H.alias("h_first")
    firsts = (
        select(
            f.c.customer_id.label("customer_id"),
            func.min(case((f.c.status == ACTIVE, f.c.changed_at))).label("joined_at"),
            func.min(case((f.c.status == CHURNED, f.c.churned_at))).label("first_churn"),
        )
        .group_by(f.c.customer_id)
        .subquery("firsts")
    )
    source: Any = firsts
    if filters.customer_where():  # the customer's current values only when a filter needs them
        source = firsts.join(C, C.c.id == firsts.c.customer_id)
    per_customer = (
        select(
            month_of(firsts.c.joined_at, dialect).label("cohort"),
            month_of(firsts.c.first_churn, dialect).label("churn_month"),
        )
        .select_from(source)
        .where(
            firsts.c.joined_at >= period.start_at,
            firsts.c.joined_at < period.end_at,
            *filters.customer_where(),
        )
        .subquery()
    )
    query = (
        select(per_customer.c.cohort, per_customer.c.churn_month, func.count().label("customers"))
        .group_by(per_customer.c.cohort, per_customer.c.churn_month)
        .order_by(per_customer.c.cohort)
    )
    return [(r.cohort, r.churn_month, int(r.customers)) for r in (await session.execute(query))]


def month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1
