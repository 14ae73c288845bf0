"""Loyalty as of today: /reports/retention/loyalty/today and /reports/retention/satisfaction-trap/today.

Served from the rows the daily sweep writes (loyalty_sweep.py): every customer typed as of the start of
the day (UTC) with trend windows of ``RETENTION_LOYALTY_TREND_WINDOW_DAYS``. The period reports
(/reports/retention/loyalty?from&to) stay for explicit periods. Definitions: docs/reports.md, "Loyalty as of
today".
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, ReportFields, ReportFormat, report_route
from services.retention.reports import loyalty_sweep
from services.retention.reports.loyalty import LoyaltyType
from services.retention.reports.loyalty_queries import distribution_fields
from services.retention.reports.params import PREFIX, Owners, Segments, Teams, Tiers, filters_of

router = APIRouter(tags=["reports"])


class TodayHead(BaseModel):
    as_of: datetime | None = Field(description="the start of the day (UTC) the customers were typed at; None: not yet")
    window_days: int | None = Field(description="the trend window: orders in the window before as_of vs the one before")


class TodayLoyaltyRow(BaseModel):
    type: LoyaltyType
    customers: int
    share: float | None = Field(description="customers / all customers typed")


class TodayLoyaltyReport(TodayHead):
    customers: int = Field(description="customers typed at as_of that are still customers and match the filters")
    repeat_rate: float | None = Field(description="customers with 2+ orders / customers with 1+")
    satisfaction_traps: int = Field(description="satisfied customers whose buying declined")
    items: list[TodayLoyaltyRow]


async def _head(session: SessionDep) -> dict[str, object]:
    latest = await loyalty_sweep.latest_sweep(session)
    return {"as_of": latest[0] if latest else None, "window_days": latest[1] if latest else None}


@report_route(
    router, f"{PREFIX}/loyalty/today", TodayLoyaltyReport, CsvTable("items", TodayLoyaltyRow, "loyalty-today")
)
async def loyalty_today(
    request: Request,
    session: SessionDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Customers per loyalty type (true, latent, spurious/inertia, none, unmeasured) as of the start of
    today, from the daily sweep; filters on the customers' current values."""
    result = await loyalty_sweep.distribution_today(session, filters_of(tier, segment, owner, team))
    return {**await _head(session), **distribution_fields(result)}


class TodayTrapRow(BaseModel):
    customer_id: str
    owner: str | None
    segment: str | None
    tier: str | None
    team: str | None
    type: LoyaltyType
    nps: int | None
    csat: int | None
    orders: int
    recent_orders: int = Field(description="orders in the window before as_of")
    prior_orders: int = Field(description="orders in the window before that")


class TodayTrapReport(TodayHead):
    total: int
    limit: int
    offset: int
    items: list[TodayTrapRow]


@report_route(
    router,
    f"{PREFIX}/satisfaction-trap/today",
    TodayTrapReport,
    CsvTable("items", TodayTrapRow, "satisfaction-trap-today"),
)
async def satisfaction_trap_today(
    request: Request,
    session: SessionDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """The satisfaction traps as of the start of today (satisfied customers whose orders in the latest
    window fell to the decline ratio of the window before), by customer id, from the daily sweep."""
    rows, total = await loyalty_sweep.traps_today(
        session, filters_of(tier, segment, owner, team), limit=limit, offset=offset
    )
    return {**await _head(session), "items": rows, "total": total}
