"""The analysis reports' queries: SQL aggregation over the read model and the tasks; never commits.

Cohorts read the customer facts (first order, purchase months) and the churn facts; the task SLA
reads the tasks. Filters (tier, segment, team) apply to the customer's current values, ``owner`` to the
task's owner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period, days_between
from services.retention.analysis import curves
from services.retention.reports import order_months
from services.retention.reports.sql import CH, CURRENT_TIER, C, F, Filters, S, month_number
from services.retention.tasks.models import Task

T = Task.__table__  # type: ignore[attr-defined]


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


async def cohort_cells(
    *, session: AsyncSession, period: Period, filters: Filters, months: int
) -> tuple[list[tuple[str, str | None, int]], list[tuple[str, str, int]]]:
    """The members per (cohort, first-churn month) and the buyers per (cohort, purchase month), for the
    customers (not erased) whose first order fell in the period; purchases up to ``months`` months after
    the cohort month. One grouped pass over the members: each member's purchase months are a bit set
    relative to its cohort month (customer_facts.order_months), so month k's buyers are the sum of bit k."""
    dialect = _dialect(session)
    first_churn = (
        select(CH.c.customer_id, func.min(CH.c.churned_at).label("first_churn"))
        .group_by(CH.c.customer_id)
        .subquery("first_churn")
    )
    source = F.outerjoin(first_churn, first_churn.c.customer_id == F.c.customer_id)
    if filters.tiers or filters.segments or filters.owners:  # the customer's current values
        source = source.join(C, C.c.customer_id == F.c.customer_id)
        not_erased = C.c.erased_at.is_(None)
    else:  # the few erased customers, left out without joining every customer
        not_erased = F.c.customer_id.not_in(select(C.c.customer_id).where(C.c.erased_at.is_not(None)))
    if filters.tiers:
        source = source.outerjoin(S, S.c.customer_id == F.c.customer_id)
    cohort = F.c.first_order_month.label("cohort")
    churn_month = month_number(first_churn.c.first_churn, dialect).label("churn_month")
    span = min(months, order_months.MONTH_BITS - 1)
    # Integer literals inline: PostgreSQL shifts a bigint by an integer (not by a bound bigint).
    # bit k of each member as an integer (PostgreSQL sums integers faster than the numeric sum of bigints)
    bits = [
        func.sum(cast(F.c.order_months.op(">>")(literal_column(str(k))).op("&")(literal_column("1")), Integer)).label(
            f"m{k}"
        )
        for k in range(span + 1)
    ]
    query = (
        select(cohort, churn_month, func.count().label("n"), *bits)
        .select_from(source)
        .where(
            F.c.first_order_at >= period.start_at,
            F.c.first_order_at < period.end_at,
            not_erased,
            *filters.on(CURRENT_TIER, C.c.segment, C.c.owner, F.c.team),
        )
        .group_by(cohort, churn_month)
    )
    cells: list[tuple[str, str | None, int]] = []
    buyers: dict[tuple[int, int], int] = {}
    for row in (await session.execute(query)).mappings():
        start = int(row["cohort"])
        churned = row["churn_month"]
        cells.append(
            (curves.month_name(start), None if churned is None else curves.month_name(int(churned)), int(row["n"]))
        )
        for k in range(span + 1):
            buyers[start, start + k] = buyers.get((start, start + k), 0) + int(row[f"m{k}"] or 0)
    active = [(curves.month_name(c), curves.month_name(m), n) for (c, m), n in sorted(buyers.items()) if n]
    return cells, active


async def task_sla(
    *, session: AsyncSession, period: Period, filters: Filters, now: datetime, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Per task owner, the tasks due in the period: completed on time or late, open past their due time,
    cancelled, and the hours from creation to completion; with the number of owners."""
    dialect = _dialect(session)
    completed = T.c.status == "completed"
    on_time = and_(completed, T.c.completed_at <= T.c.due_at)
    overdue_open = and_(T.c.status == "open", T.c.due_at < now)
    hours = days_between(T.c.completed_at, T.c.created_at, dialect) * 24.0
    late_hours = days_between(T.c.completed_at, T.c.due_at, dialect) * 24.0
    source: Any = T
    if filters.tiers or filters.segments or filters.teams:
        source = (
            T.outerjoin(C, C.c.customer_id == T.c.customer_id)
            .outerjoin(S, S.c.customer_id == T.c.customer_id)
            .outerjoin(F, F.c.customer_id == T.c.customer_id)
        )
    query = (
        select(
            T.c.owner.label("owner"),
            func.count().label("tasks"),
            func.sum(_flag(completed)).label("completed"),
            func.sum(_flag(on_time)).label("on_time"),
            func.sum(_flag(overdue_open)).label("open_overdue"),
            func.sum(_flag(T.c.status == "cancelled")).label("cancelled"),
            func.avg(case((completed, hours))).label("hours_to_complete_avg"),
            func.avg(case((and_(completed, T.c.completed_at > T.c.due_at), late_hours))).label("hours_late_avg"),
            func.count().over().label("_groups"),
        )
        .select_from(source)
        .where(
            T.c.due_at >= period.start_at,
            T.c.due_at < period.end_at,
            *filters.on(CURRENT_TIER, C.c.segment, T.c.owner, F.c.team),
        )
        .group_by(T.c.owner)
        .order_by(T.c.owner.is_(None), T.c.owner)
        .limit(limit)
        .offset(offset)
    )
    rows = [dict(r) for r in (await session.execute(query)).mappings()]
    if rows:
        total = int(rows[0]["_groups"])
    else:  # past the end, or no task at all: count the owners alone
        owners = (
            select(T.c.owner)
            .select_from(source)
            .where(
                T.c.due_at >= period.start_at,
                T.c.due_at < period.end_at,
                *filters.on(CURRENT_TIER, C.c.segment, T.c.owner, F.c.team),
            )
        )
        counted = select(func.count()).select_from(owners.group_by(T.c.owner).subquery())
        total = int((await session.execute(counted)).scalar_one())
    return rows, total
