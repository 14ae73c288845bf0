"""What the retention report queries share: the tables they read, the filters, and small SQL helpers.

Filters: tier, segment, owner and team, each repeatable (any of). Churn facts filter by the values at churn, alerts
by the alert's owner, tier and segment (at the alert) and the customer's team, every other report by the
customer's current values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period
from services.retention.alerts.models import Alert
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports.models import (
    ChurnFact,
    CustomerFact,
    FactEvent,
)

A = Alert.__table__  # type: ignore[attr-defined]
C = Customer.__table__  # type: ignore[attr-defined]
S = CustomerScore.__table__  # type: ignore[attr-defined]
F = CustomerFact.__table__  # type: ignore[attr-defined]
E = FactEvent.__table__  # type: ignore[attr-defined]
CH = ChurnFact.__table__  # type: ignore[attr-defined]
IS_CUSTOMER = ("active", "won_back")


@dataclass(frozen=True, slots=True)
class Filters:
    tiers: Sequence[str] = ()
    segments: Sequence[str] = ()
    owners: Sequence[str] = ()
    teams: Sequence[str] = ()

    def on(self, tier: Any, segment: Any, owner: Any, team: Any) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        for column, values in ((tier, self.tiers), (segment, self.segments), (owner, self.owners), (team, self.teams)):
            if values:
                where.append(column.in_(list(values)))
        return where


CURRENT_TIER = func.coalesce(C.c.tier, S.c.value_tier)


def current(filters: Filters) -> list[ColumnElement[bool]]:
    return filters.on(CURRENT_TIER, C.c.segment, C.c.owner, F.c.team)


def customers_joined(customer_id: Any) -> Any:
    """The customer replica, latest score and facts of ``customer_id`` (outer joins: any may be missing)."""
    return (
        C.outerjoin(S, S.c.customer_id == C.c.customer_id).outerjoin(F, F.c.customer_id == C.c.customer_id),
        C.c.customer_id == customer_id,
    )


def matching_customers(filters: Filters) -> Any:
    """The ids of the customers whose current tier, segment, owner and team match the filters; None without
    a filter (every customer, including those the replica does not hold)."""
    if not (filters.tiers or filters.segments or filters.owners or filters.teams):
        return None
    source = C.outerjoin(S, S.c.customer_id == C.c.customer_id).outerjoin(F, F.c.customer_id == C.c.customer_id)
    return select(C.c.customer_id).select_from(source).where(*current(filters))


def events(filters: Filters) -> Any:
    """fact_events, joined to the customer's current values only when a filter needs them."""
    if not (filters.tiers or filters.segments or filters.owners or filters.teams):
        return E
    source, joined = customers_joined(E.c.customer_id)
    return E.join(source, joined)


def month_number(column: Any, dialect: str) -> ColumnElement[int]:
    """The calendar month (UTC) of a timestamp as year x 12 + month - 1, as order_months.month_number."""
    if dialect == "postgresql":
        utc = func.timezone("UTC", column)
        return cast(func.extract("year", utc) * 12 + func.extract("month", utc) - 1, Integer)
    year, month = cast(func.strftime("%Y", column), Integer), cast(func.strftime("%m", column), Integer)
    return year * 12 + month - 1


def dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


async def paged(session: AsyncSession, query: Any, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.limit(limit).offset(offset))).mappings().all()
    return [dict(r) for r in rows], int(total)


def churns(period: Period, filters: Filters) -> list[ColumnElement[bool]]:
    return [
        CH.c.churned_at >= period.start_at,
        CH.c.churned_at < period.end_at,
        *filters.on(CH.c.tier, CH.c.segment, CH.c.owner, CH.c.team),
    ]
