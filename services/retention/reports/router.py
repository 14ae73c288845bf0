"""Retention report routes (/reports/retention/...): owner performance, value lost, churn reasons, complaint
conversion and satisfaction; the loyalty family is in loyalty_router.py.

Every measure's definition and formula: docs/reports.md, "Retention". JSON by default, the report's
table as CSV with ``?format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from servicekit import runtime_settings
from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from services.retention.reports import queries
from services.retention.reports.params import (
    PREFIX,
    Owners,
    Paged,
    Report,
    Segments,
    Teams,
    Tiers,
    filters_of,
    settings_of,
)

router = APIRouter(tags=["reports"])


# ---- owner performance -------------------------------------------------------------------------------


class OwnerRow(BaseModel):
    owner: str | None = Field(description="the alert's owner when it was raised (None: unowned)")
    alerts: int = Field(description="churn alerts raised in the period")
    acknowledged: int
    saved: int = Field(description="of those, resolved as saved")
    churned: int = Field(description="of those, resolved as churned")
    save_rate: float | None = Field(description="saved / (saved + churned)")
    sla_due: int = Field(description="alerts acknowledged, or whose response deadline passed")
    sla_met: int = Field(description="alerts acknowledged within the response SLA")
    sla_compliance: float | None = Field(description="sla_met / sla_due")
    response_hours_p50: float | None = Field(description="median hours from raised to acknowledged")
    response_hours_p90: float | None
    response_hours_avg: float | None


class OwnerReport(Paged):
    sla_hours: float
    items: list[OwnerRow]


@report_route(router, f"{PREFIX}/owners", OwnerReport, CsvTable("items", OwnerRow, "owner-performance"))
async def owner_performance(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Per owner, for the churn alerts raised in ``[from, to)``: save rate, SLA compliance of the alert
    response, and the response time (raised -> acknowledged) p50/p90."""
    sla = (await runtime_settings.current(session, settings_of(request))).alert_response_sla_hours
    rows, total = await queries.owner_performance(
        session=session,
        period=period,
        filters=filters_of(tier, segment, owner, team),
        sla_hours=sla,
        now=utc_now(),
        limit=limit,
        offset=offset,
    )
    items = [
        OwnerRow(
            owner=r["grp"],
            alerts=r["alerts"],
            acknowledged=int(r["acknowledged"] or 0),
            saved=int(r["saved"] or 0),
            churned=int(r["churned"] or 0),
            save_rate=ratio(r["saved"], (r["saved"] or 0) + (r["churned"] or 0)),
            sla_due=int(r["sla_due"] or 0),
            sla_met=int(r["sla_met"] or 0),
            sla_compliance=ratio(r["sla_met"], r["sla_due"]),
            response_hours_p50=r["p50"],
            response_hours_p90=r["p90"],
            response_hours_avg=r["avg"],
        )
        for r in rows
    ]
    return {"sla_hours": sla, "items": items, "total": total}


# ---- value lost to churn ------------------------------------------------------------------------------


class ValueRow(BaseModel):
    churned: int
    historical_value_lost: float = Field(description="sum of the revenue recorded up to each churn")
    predicted_value_lost: float = Field(description="sum of the latest CLV known at each churn")
    with_prediction: int = Field(description="churns whose CLV was known")
    share: float | None = Field(default=None, description="churned / all churns in the period")


class TierValueRow(ValueRow):
    tier: str | None


class SideValueRow(ValueRow):
    side: str


class ValueLostReport(Report):
    overall: ValueRow
    by_tier: list[TierValueRow]
    by_side: list[SideValueRow]


@report_route(router, f"{PREFIX}/value-lost", ValueLostReport, CsvTable("by_tier", TierValueRow, "value-lost"))
async def value_lost(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Churns dated in ``[from, to)`` and the value they took (historical and predicted), by tier at
    churn and by side of the churn reason. CSV: by tier."""
    overall, by_tier, by_side = await queries.value_lost(
        session=session, period=period, filters=filters_of(tier, segment, owner, team)
    )
    churned = overall["churned"]
    return {
        "overall": {**overall, "share": ratio(churned, churned)},
        "by_tier": [{**r, "share": ratio(r["churned"], churned)} for r in by_tier],
        "by_side": [{**r, "share": ratio(r["churned"], churned)} for r in by_side],
    }


class MixRow(BaseModel):
    group: str | None = Field(description="the tier or segment at churn")
    reason: str
    churned: int
    share_of_group: float = Field(description="churned / the group's churns")
    historical_value_lost: float
    predicted_value_lost: float


class MixReport(Paged):
    group_by: Literal["tier", "segment"]
    items: list[MixRow]


@report_route(router, f"{PREFIX}/reason-mix", MixReport, CsvTable("items", MixRow, "churn-reason-mix"))
async def reason_mix(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    group_by: Literal["tier", "segment"] = "tier",
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """The churn-reason mix per tier or segment (at churn) of the churns dated in ``[from, to)``."""
    rows, total = await queries.reason_mix(
        session=session,
        period=period,
        filters=filters_of(tier, segment, owner, team),
        group_by=group_by,
        limit=limit,
        offset=offset,
    )
    items = [
        MixRow(
            group=r["grp"],
            reason=r["reason"],
            churned=r["churned"],
            share_of_group=r["churned"] / r["group_churned"],
            historical_value_lost=r["historical_value_lost"],
            predicted_value_lost=r["predicted_value_lost"],
        )
        for r in rows
    ]
    return {"group_by": group_by, "items": items, "total": total}


# ---- complaint-to-churn conversion --------------------------------------------------------------------


class ConversionRow(BaseModel):
    category: str
    complainers: int = Field(description="customers with a complaint of this category opened in the period")
    churned: int = Field(description="of those, churned within within_days of their first such complaint")
    conversion_rate: float | None = Field(description="churned / complainers")


class ConversionReport(Paged):
    within_days: int
    complainers: int
    churned: int
    conversion_rate: float | None
    items: list[ConversionRow]


@report_route(
    router,
    f"{PREFIX}/complaint-conversion",
    ConversionReport,
    CsvTable("items", ConversionRow, "complaint-conversion"),
)
async def complaint_conversion(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    within_days: Annotated[int, Query(ge=1, le=365, description="churned within this many days")] = 90,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Customers with a complaint opened in ``[from, to)`` who churned within ``within_days`` days of
    their first complaint in the period: overall and per complaint category."""
    overall, rows, total = await queries.complaint_conversion(
        session=session,
        period=period,
        filters=filters_of(tier, segment, owner, team),
        within_days=within_days,
        limit=limit,
        offset=offset,
    )
    items = [
        ConversionRow(
            category=r["category"],
            complainers=r["complainers"],
            churned=int(r["churned"] or 0),
            conversion_rate=ratio(r["churned"], r["complainers"]),
        )
        for r in rows
    ]
    return {
        "within_days": within_days,
        "complainers": overall["complainers"],
        "churned": overall["churned"],
        "conversion_rate": ratio(overall["churned"], overall["complainers"]),
        "items": items,
        "total": total,
    }


# ---- satisfaction --------------------------------------------------------------------------------------


class SurveyMeasures(BaseModel):
    survey: str = Field(description="nps (0-10) or csat (1-5)")
    answers: int
    avg_score: float | None
    nps: float | None = Field(description="NPS only: (promoters - detractors) / answers x 100")
    promoters: int
    detractors: int
    satisfied_share: float | None = Field(description="CSAT only: answers of 4 or 5 / answers")


class DimensionRow(SurveyMeasures):
    dimension: str = Field(description="product, service, relationship, or unspecified")


class TrendRow(SurveyMeasures):
    month: str = Field(description="YYYY-MM (UTC)")


class SatisfactionReport(Paged):
    by_dimension: list[DimensionRow]
    trend: list[TrendRow] = Field(description="per month and survey, paged")


def _survey(r: Any) -> dict[str, Any]:
    nps = r["survey"] == "nps"
    promoters, detractors = int(r["promoters"] or 0), int(r["detractors"] or 0)
    return {
        "survey": r["survey"],
        "answers": r["answers"],
        "avg_score": r["avg_score"],
        "nps": (promoters - detractors) / r["answers"] * 100 if nps and r["answers"] else None,
        "promoters": promoters,
        "detractors": detractors,
        "satisfied_share": ratio(r["satisfied"], r["answers"]) if r["survey"] == "csat" else None,
    }


@report_route(router, f"{PREFIX}/satisfaction", SatisfactionReport, CsvTable("trend", TrendRow, "satisfaction"))
async def satisfaction(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """NPS and CSAT answered in ``[from, to)`` by dimension (product, service and support,
    relationship) and by month (the trend). CSV: the trend."""
    by_dimension, trend, total = await queries.satisfaction(
        session=session, period=period, filters=filters_of(tier, segment, owner, team), limit=limit, offset=offset
    )
    return {
        "by_dimension": [{**_survey(r), "dimension": r["dimension"]} for r in by_dimension],
        "trend": [{**_survey(r), "month": r["month"]} for r in trend],
        "total": total,
    }
