"""Complaint analytics by SQL aggregation over complaints and their workflow steps (docs/reports.md).

A complaint belongs to the period in which it was opened (``occurred_at``). It is *handled* at its first
step into resolved or rejected (where its SLA clock stops, sla.SLA_STOPPED), *judged* at its first step
into valid or rejected. No I/O besides the queries; never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.reports import Period, days_between
from services.interaction.complaints.models import ComplaintStep
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.interactions.models import Interaction
from services.interaction.replica.models import KnownCustomer

I = Interaction.__table__  # type: ignore[attr-defined]  # noqa: E741
STEPS = ComplaintStep.__table__  # type: ignore[attr-defined]
KNOWN = KnownCustomer.__table__  # type: ignore[attr-defined]
S = ComplaintStatus


def _first(steps: Any, statuses: Sequence[ComplaintStatus]) -> Any:
    """When the complaint first stepped into one of ``statuses`` (None: never)."""
    return func.min(case((steps.c.status.in_([x.value for x in statuses]), steps.c.at)))


def _reached(steps: Any, status: ComplaintStatus) -> Any:
    """1 if the complaint ever stepped into ``status``, else 0."""
    return func.max(case((steps.c.status == status.value, 1), else_=0))


def _profile(
    *, owners: Sequence[str], segments: Sequence[str], teams: Sequence[str], tiers: Sequence[str]
) -> list[ColumnElement[bool]]:
    """Conditions on the replica row (each any of its values; a customer without the value matches none).
    The tier is the account-managed one, else the scored one."""
    where: list[ColumnElement[bool]] = []
    for column, values in ((KNOWN.c.owner, owners), (KNOWN.c.segment, segments), (KNOWN.c.team, teams)):
        if values:
            where.append(column.in_(list(values)))
    if tiers:
        where.append(func.coalesce(KNOWN.c.managed_tier, KNOWN.c.scored_tier).in_(list(tiers)))
    return where


async def complaints(
    *,
    session: AsyncSession,
    period: Period,
    categories: Sequence[str],
    severities: Sequence[str],
    owners: Sequence[str] = (),
    segments: Sequence[str] = (),
    teams: Sequence[str] = (),
    tiers: Sequence[str] = (),
    group_by: str | None,
    now: datetime,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    dialect = session.get_bind().dialect.name
    group = (
        literal("all")
        if group_by is None
        else {"category": I.c.category, "severity": I.c.severity, "channel": I.c.channel}[group_by]
    )
    where = [I.c.type == "complaint", I.c.occurred_at >= period.start_at, I.c.occurred_at < period.end_at]
    if categories:
        where.append(I.c.category.in_(list(categories)))
    if severities:
        where.append(I.c.severity.in_(list(severities)))
    # The customer's current owner, segment, team and tier, from this service's customer replica.
    profile = _profile(owners=owners, segments=segments, teams=teams, tiers=tiers)
    if profile:
        where.append(I.c.customer_id.in_(select(KNOWN.c.customer_id).where(*profile)))
    # One pass over the period's complaints and their steps: per complaint, when it was first handled and
    # first resolved, and whether it was ever judged valid or rejected.
    steps = STEPS.alias("steps")
    per_step = (
        select(
            group.label("grp"),
            I.c.customer_id.label("customer_id"),
            I.c.occurred_at.label("occurred_at"),
            I.c.due_at.label("due_at"),
            _reached(steps, S.valid).label("valid"),
            _reached(steps, S.rejected).label("rejected"),
            _first(steps, [S.resolved, S.rejected]).label("handled_at"),
            _first(steps, [S.resolved]).label("resolved_at"),
        )
        .select_from(I.outerjoin(steps, steps.c.complaint_id == I.c.id))
        .where(*where)
        .group_by(I.c.id)  # the other columns depend on the complaint's id
        .cte("per_step")  # read by the totals and by the repeat complainers: computed once
    )
    c = per_step.c
    # The SLA was due by the time of the report if the complaint was handled or its deadline passed.
    cutoff = min(now, period.end_at)
    per_complaint = select(
        c.grp,
        c.customer_id,
        c.valid,
        c.rejected,
        days_between(c.resolved_at, c.occurred_at, dialect).label("days_to_resolve"),
        case((and_(c.handled_at.is_not(None), c.handled_at <= c.due_at), 1), else_=0).label("sla_met"),
        case((or_(c.handled_at.is_not(None), c.due_at < cutoff), 1), else_=0).label("sla_due"),
    ).subquery()
    p = per_complaint.c
    per_customer = select(p.grp, p.customer_id, func.count().label("n")).group_by(p.grp, p.customer_id).subquery()
    repeaters = (
        select(
            per_customer.c.grp,
            func.sum(case((per_customer.c.n >= 2, 1), else_=0)).label("repeat_complainers"),
            func.count().label("complainers"),
            func.sum(case((per_customer.c.n >= 2, per_customer.c.n), else_=0)).label("repeat_complaints"),
        )
        .group_by(per_customer.c.grp)
        .subquery()
    )
    totals = (
        select(
            p.grp,
            func.count().label("opened"),
            func.sum(p.valid).label("valid"),
            func.sum(p.rejected).label("rejected"),
            func.count(p.days_to_resolve).label("resolved"),
            func.avg(p.days_to_resolve).label("avg_days_to_resolve"),
            func.max(p.days_to_resolve).label("max_days_to_resolve"),
            func.sum(p.sla_met).label("sla_met"),
            func.sum(p.sla_due).label("sla_due"),
        )
        .group_by(p.grp)
        .subquery()
    )
    query = (
        select(totals, repeaters.c.repeat_complainers, repeaters.c.complainers, repeaters.c.repeat_complaints)
        .join(repeaters, or_(repeaters.c.grp == totals.c.grp, and_(repeaters.c.grp.is_(None), totals.c.grp.is_(None))))
        .order_by(totals.c.opened.desc(), totals.c.grp)
    )
    # The page and the number of groups from one evaluation: the count travels with each row.
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    rows = (await session.execute(counted)).mappings().all()
    if not rows:  # past the end (or no complaints): the number of groups needs its own count
        total = (await session.execute(select(func.count()).select_from(totals))).scalar_one()
        return [], int(total)
    return [{k: v for k, v in r.items() if k != "_total"} for r in rows], int(rows[0]["_total"])
