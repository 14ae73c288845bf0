"""Report routes of the customer service: the churn situation, churn reasons, win-back, cohorts.

Every measure's definition and formula: docs/reports.md. JSON by default, the report's table as CSV
with ``?format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from contracts.customer import VALUE_TIERS
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from services.customer.reports import service as reports
from services.customer.status.lifecycle import REASON_FACTS, ChurnReason, ChurnSide
from services.customer.status.models import ChurnReasonCode

router = APIRouter(prefix="/reports/customers", tags=["reports"])

Segments = Annotated[list[str] | None, Query(alias="segment", description="repeat to match any of several")]
Owners = Annotated[list[str] | None, Query(alias="owner", description="account manager; repeatable")]
Teams = Annotated[list[str] | None, Query(alias="team", description="the customer's team attribute; repeatable")]
Tiers = Annotated[
    list[Literal[VALUE_TIERS]] | None,  # type: ignore[valid-type]
    Query(alias="tier", description="the customer's value tier: account-managed, else as scored; repeatable"),
]
Reasons = Annotated[list[ChurnReasonCode] | None, Query(alias="reason", description="churn reason code; repeatable")]
CustomerGroup = Literal["segment", "owner", "tier"]


def _filters(
    segment: list[str] | None,
    owner: list[str] | None,
    team: list[str] | None,
    tier: list[str] | None,
    reason: list[ChurnReason] | None = None,
) -> reports.Filters:
    return reports.Filters(
        segments=segment or (), owners=owner or (), teams=team or (), tiers=tier or (), reasons=reason or ()
    )


# ---- churn situation ---------------------------------------------------------------------------------


class SituationRow(BaseModel):
    group: str | None = Field(description="the group's segment, owner or tier; 'all' without group_by")
    customers_at_start: int = Field(description="customers (active or won_back) at the start of the period")
    customers_at_end: int = Field(description="customers (active or won_back) at the end of the period")
    retained: int = Field(description="customers at the start who are still customers at the end")
    new: int = Field(description="customers who became customers (first active) in the period")
    lost: int = Field(description="churns dated in the period")
    won_back: int = Field(description="churned customers won back in the period")
    churn_rate: float | None = Field(description="lost / customers_at_start (客户流失率)")
    retention_rate: float | None = Field(description="retained / customers_at_start (客户保持率)")
    new_customer_rate: float | None = Field(description="new / customers_at_start")


class SituationReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: CustomerGroup | None
    items: list[SituationRow]
    total: int
    limit: int
    offset: int


@report_route(router, "/churn", SituationReport, CsvTable("items", SituationRow, "churn-situation"))
async def churn_situation(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    tier: Tiers = None,
    group_by: CustomerGroup | None = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """The churn situation over ``[from, to)``: customers at start and end, new, lost, won back, and the
    churn, retention and new-customer rates, overall or per segment, owner or value tier."""
    rows, total = await reports.churn_situation(
        session=session,
        period=period,
        filters=_filters(segment, owner, team, tier),
        group_by=group_by,
        limit=limit,
        offset=offset,
    )
    items = [
        SituationRow(
            group=r["grp"],
            customers_at_start=r["customers_at_start"],
            customers_at_end=r["customers_at_end"],
            retained=r["retained"],
            new=r["new"],
            lost=r["lost"],
            won_back=r["won_back"],
            churn_rate=ratio(r["lost"], r["customers_at_start"]),
            retention_rate=ratio(r["retained"], r["customers_at_start"]),
            new_customer_rate=ratio(r["new"], r["customers_at_start"]),
        )
        for r in rows
    ]
    return {"group_by": group_by, "items": items, "total": total}


# ---- churn reasons -----------------------------------------------------------------------------------


class ReasonRow(BaseModel):
    reason: str
    side: ChurnSide
    voluntary: bool
    churned: int
    share: float = Field(description="churned / all churns in the period (with the filters)")


class SideRow(BaseModel):
    side: ChurnSide
    churned: int
    share: float


class VoluntaryRow(BaseModel):
    voluntary: bool
    churned: int
    share: float


class MixRow(BaseModel):
    group: str | None
    reason: str
    churned: int
    share_of_group: float = Field(description="churned / the group's churns")


class ReasonsReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    churned: int = Field(description="churns dated in the period")
    by_reason: list[ReasonRow]
    by_side: list[SideRow]
    by_voluntary: list[VoluntaryRow]
    group_by: CustomerGroup | None
    mix: list[MixRow] = Field(description="with group_by: the reason mix per group, paged")
    total: int = Field(description="mix rows in all pages")
    limit: int
    offset: int


def _facts(reason: str) -> tuple[ChurnSide, bool]:
    try:
        facts = REASON_FACTS[ChurnReason(reason)]
    except ValueError:  # a code from before the taxonomy that no migration knew
        return ChurnSide.unknown, True
    return facts.side, facts.voluntary


def _reasons_table(arguments: Mapping[str, Any]) -> CsvTable:
    """With group_by the mix per group, else the churns by reason."""
    if arguments["group_by"] is not None:
        return CsvTable("mix", MixRow, "churn-reason-mix")
    return CsvTable("by_reason", ReasonRow, "churn-reasons")


@report_route(router, "/churn-reasons", ReasonsReport, _reasons_table)
async def churn_reasons(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    tier: Tiers = None,
    reason: Reasons = None,
    group_by: CustomerGroup | None = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Churns dated in ``[from, to)`` by reason, by side (company/customer) and voluntary or not; with
    ``group_by`` the reason mix per segment, owner or value tier. CSV: the mix with group_by, else by reason."""
    filters = _filters(segment, owner, team, tier, reason)
    by_reason, by_side, by_voluntary = await reports.churn_reasons(session=session, period=period, filters=filters)
    churned = sum(r["churned"] for r in by_reason)
    mix: list[MixRow] = []
    total = 0
    if group_by is not None:
        cells, total = await reports.reason_mix(
            session=session, period=period, filters=filters, group_by=group_by, limit=limit, offset=offset
        )
        mix = [
            MixRow(
                group=c["grp"],
                reason=c["reason"],
                churned=c["churned"],
                share_of_group=c["churned"] / c["group_churned"],
            )
            for c in cells
        ]
    return {
        "churned": churned,
        "by_reason": [
            ReasonRow(
                reason=r["reason"],
                side=_facts(r["reason"])[0],
                voluntary=_facts(r["reason"])[1],
                churned=r["churned"],
                share=r["churned"] / churned,
            )
            for r in by_reason
        ],
        "by_side": [SideRow(side=r["side"], churned=r["churned"], share=r["churned"] / churned) for r in by_side],
        "by_voluntary": [
            VoluntaryRow(voluntary=bool(r["voluntary"]), churned=r["churned"], share=r["churned"] / churned)
            for r in by_voluntary
        ],
        "group_by": group_by,
        "mix": mix,
        "total": total,
    }


# ---- win-back ----------------------------------------------------------------------------------------


class WinBackRow(BaseModel):
    group: str | None
    churned: int = Field(description="churns dated in the period")
    won_back: int = Field(description="of those, won back before the end of the period")
    win_back_rate: float | None = Field(description="won_back / churned")
    avg_days_to_win_back: float | None = Field(description="mean of (won back at - churn day) in days")
    min_days_to_win_back: float | None
    max_days_to_win_back: float | None


class WinBackReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: Literal["segment", "owner", "tier", "reason"] | None
    items: list[WinBackRow]
    total: int
    limit: int
    offset: int


@report_route(router, "/win-back", WinBackReport, CsvTable("items", WinBackRow, "win-back"))
async def win_back(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    tier: Tiers = None,
    reason: Reasons = None,
    group_by: Literal["segment", "owner", "tier", "reason"] | None = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Win-back (挽回客户) of the churns dated in ``[from, to)``: the rate and the days it took."""
    rows, total = await reports.win_back(
        session=session,
        period=period,
        filters=_filters(segment, owner, team, tier, reason),
        group_by=group_by,
        limit=limit,
        offset=offset,
    )
    items = [
        WinBackRow(
            group=r["grp"],
            churned=r["churned"],
            won_back=r["won_back"],
            win_back_rate=ratio(r["won_back"], r["churned"]),
            avg_days_to_win_back=r["avg_days_to_win_back"],
            min_days_to_win_back=r["min_days_to_win_back"],
            max_days_to_win_back=r["max_days_to_win_back"],
        )
        for r in rows
    ]
    return {"group_by": group_by, "items": items, "total": total}


# ---- cohorts -----------------------------------------------------------------------------------------


class CohortPoint(BaseModel):
    cohort: str = Field(description="YYYY-MM: the month the customers first became customers")
    size: int
    month: int = Field(description="months after the cohort month (0: the cohort month itself)")
    retained: int = Field(description="members not churned by the end of that month")
    retention: float = Field(description="retained / size")


class CohortReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    months: int
    points: list[CohortPoint]


@report_route(router, "/cohorts", CohortReport, CsvTable("points", CohortPoint, "cohorts"))
async def cohorts(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    tier: Tiers = None,
    months: Annotated[int, Query(ge=0, le=36, description="curve length in months after the cohort month")] = 12,
    format: ReportFormat = None,
) -> ReportFields:
    """Cohort retention: customers grouped by the month they first became customers (within
    ``[from, to)``), and for each following month the share not churned by its end. Only months that
    have ended are shown. At most 36 points per cohort, one cohort per month of the period."""
    cells = await reports.cohorts(session=session, period=period, filters=_filters(segment, owner, team, tier))
    today = datetime.now(UTC).date()
    last_ended = today.year * 12 + today.month - 2  # the month before the current one
    by_cohort: dict[str, list[tuple[str | None, int]]] = {}
    for cohort, churn_month, count in cells:
        by_cohort.setdefault(cohort, []).append((churn_month, count))
    points: list[CohortPoint] = []
    for cohort, churns in sorted(by_cohort.items()):
        start = reports.month_index(cohort)
        size = sum(n for _, n in churns)
        for offset in range(0, min(months, last_ended - start) + 1):
            # Retained through month start+offset: no churn, or a first churn in a later month.
            retained = sum(n for m, n in churns if m is None or reports.month_index(m) > start + offset)
            points.append(
                CohortPoint(cohort=cohort, size=size, month=offset, retained=retained, retention=retained / size)
            )
    return {"months": months, "points": points}
