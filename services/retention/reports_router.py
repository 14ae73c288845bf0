"""Retention report routes (/reports/retention/...) and the per-customer loyalty and churn-suggestion views.

Every measure's definition and formula: docs/reports.md, "Retention". JSON by default, the report's
table as CSV with ``?format=csv`` or ``Accept: text/csv``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, not_found
from servicekit.reports import CSV_RESPONSE, PeriodDep, ReportFormat, answer, ratio
from servicekit.types import as_utc
from services.retention import read_model, reports
from services.retention.db import Tier, UtcDatetime
from services.retention.loyalty import Attitude, Behaviour, LoyaltyType, classify
from services.retention.replica.models import Customer
from services.retention.settings import RetentionSettings

router = APIRouter(tags=["reports"])
PREFIX = "/reports/retention"

Tiers = Annotated[list[Tier] | None, Query(alias="tier", description="value tier; repeatable")]
Segments = Annotated[list[str] | None, Query(alias="segment", description="repeat to match any of several")]
Owners = Annotated[list[str] | None, Query(alias="owner", description="account manager; repeatable")]
Teams = Annotated[list[str] | None, Query(alias="team", description="the customer's team attribute; repeatable")]


def _filters(
    tier: list[str] | None, segment: list[str] | None, owner: list[str] | None, team: list[str] | None
) -> reports.Filters:
    return reports.Filters(tiers=tier or (), segments=segment or (), owners=owner or (), teams=team or ())


def _settings(request: Request) -> RetentionSettings:
    settings: RetentionSettings = request.app.state.settings
    return settings


class _Report(BaseModel):
    from_: str = Field(alias="from")
    to: str


class _Paged(_Report):
    total: int
    limit: int
    offset: int


def _head(period: Any) -> dict[str, str]:
    return {"from": period.first.isoformat(), "to": period.end.isoformat()}


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


class OwnerReport(_Paged):
    sla_hours: float
    items: list[OwnerRow]


@router.get(f"{PREFIX}/owners", response_model=OwnerReport, response_model_by_alias=True, responses={200: CSV_RESPONSE})
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
) -> BaseModel | Response:
    """Per owner, for the churn alerts raised in ``[from, to)``: save rate, SLA compliance of the alert
    response, and the response time (raised -> acknowledged) p50/p90."""
    sla = _settings(request).alert_response_sla_hours
    rows, total = await reports.owner_performance(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
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
    report = OwnerReport.model_validate(
        {**_head(period), "sla_hours": sla, "items": items, "total": total, "limit": limit, "offset": offset}
    )
    return answer(request, format, report, table="items", model=OwnerRow, filename="owner-performance")


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


class ValueLostReport(_Report):
    overall: ValueRow
    by_tier: list[TierValueRow]
    by_side: list[SideValueRow]


@router.get(
    f"{PREFIX}/value-lost", response_model=ValueLostReport, response_model_by_alias=True, responses={200: CSV_RESPONSE}
)
async def value_lost(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """Churns dated in ``[from, to)`` and the value they took (historical and predicted), by tier at
    churn and by side of the churn reason. CSV: by tier."""
    overall, by_tier, by_side = await reports.value_lost(
        session=session, period=period, filters=_filters(tier, segment, owner, team)
    )
    churned = overall["churned"]
    report = ValueLostReport.model_validate(
        {
            **_head(period),
            "overall": {**overall, "share": ratio(churned, churned)},
            "by_tier": [{**r, "share": ratio(r["churned"], churned)} for r in by_tier],
            "by_side": [{**r, "share": ratio(r["churned"], churned)} for r in by_side],
        }
    )
    return answer(request, format, report, table="by_tier", model=TierValueRow, filename="value-lost")


class MixRow(BaseModel):
    group: str | None = Field(description="the tier or segment at churn")
    reason: str
    churned: int
    share_of_group: float = Field(description="churned / the group's churns")
    historical_value_lost: float
    predicted_value_lost: float


class MixReport(_Paged):
    group_by: Literal["tier", "segment"]
    items: list[MixRow]


@router.get(
    f"{PREFIX}/reason-mix", response_model=MixReport, response_model_by_alias=True, responses={200: CSV_RESPONSE}
)
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
) -> BaseModel | Response:
    """The churn-reason mix per tier or segment (at churn) of the churns dated in ``[from, to)``."""
    rows, total = await reports.reason_mix(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
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
    report = MixReport.model_validate(
        {**_head(period), "group_by": group_by, "items": items, "total": total, "limit": limit, "offset": offset}
    )
    return answer(request, format, report, table="items", model=MixRow, filename="churn-reason-mix")


# ---- complaint-to-churn conversion --------------------------------------------------------------------


class ConversionRow(BaseModel):
    category: str
    complainers: int = Field(description="customers with a complaint of this category opened in the period")
    churned: int = Field(description="of those, churned within within_days of their first such complaint")
    conversion_rate: float | None = Field(description="churned / complainers")


class ConversionReport(_Paged):
    within_days: int
    complainers: int
    churned: int
    conversion_rate: float | None
    items: list[ConversionRow]


@router.get(
    f"{PREFIX}/complaint-conversion",
    response_model=ConversionReport,
    response_model_by_alias=True,
    responses={200: CSV_RESPONSE},
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
) -> BaseModel | Response:
    """Customers with a complaint opened in ``[from, to)`` who churned within ``within_days`` days of
    their first complaint in the period: overall and per complaint category."""
    overall, rows, total = await reports.complaint_conversion(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
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
    report = ConversionReport.model_validate(
        {
            **_head(period),
            "within_days": within_days,
            "complainers": overall["complainers"],
            "churned": overall["churned"],
            "conversion_rate": ratio(overall["churned"], overall["complainers"]),
            "items": items,
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )
    return answer(request, format, report, table="items", model=ConversionRow, filename="complaint-conversion")


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


class SatisfactionReport(_Paged):
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


@router.get(
    f"{PREFIX}/satisfaction",
    response_model=SatisfactionReport,
    response_model_by_alias=True,
    responses={200: CSV_RESPONSE},
)
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
) -> BaseModel | Response:
    """NPS and CSAT answered in ``[from, to)`` by dimension (product, service and support,
    relationship) and by month (the trend). CSV: the trend."""
    by_dimension, trend, total = await reports.satisfaction(
        session=session, period=period, filters=_filters(tier, segment, owner, team), limit=limit, offset=offset
    )
    report = SatisfactionReport.model_validate(
        {
            **_head(period),
            "by_dimension": [{**_survey(r), "dimension": r["dimension"]} for r in by_dimension],
            "trend": [{**_survey(r), "month": r["month"]} for r in trend],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )
    return answer(request, format, report, table="trend", model=TrendRow, filename="satisfaction")


# ---- loyalty ---------------------------------------------------------------------------------------------


class LoyaltyRow(BaseModel):
    type: LoyaltyType
    customers: int
    share: float | None = Field(description="customers / all customers measured")


class LoyaltyReport(_Report):
    customers: int = Field(description="customers now (active or won back) matching the filters")
    repeat_rate: float | None = Field(description="customers with 2+ orders before to / customers with 1+")
    satisfaction_traps: int = Field(description="satisfied customers whose buying declined")
    items: list[LoyaltyRow]


@router.get(
    f"{PREFIX}/loyalty", response_model=LoyaltyReport, response_model_by_alias=True, responses={200: CSV_RESPONSE}
)
async def loyalty_distribution(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """Customers per loyalty type (true, latent, spurious/inertia, none, unmeasured), measured at ``to``;
    the trend compares orders in ``[from, to)`` with the equally long period before."""
    result = await reports.loyalty_distribution(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
        thresholds=_settings(request).loyalty_thresholds(),
    )
    customers = result["customers"]
    report = LoyaltyReport.model_validate(
        {
            **_head(period),
            "customers": customers,
            "repeat_rate": ratio(result["repeaters"], result["buyers"]),
            "satisfaction_traps": result["traps"],
            "items": [{"type": t, "customers": n, "share": ratio(n, customers)} for t, n in result["counts"].items()],
        }
    )
    return answer(request, format, report, table="items", model=LoyaltyRow, filename="loyalty")


class TrapRow(BaseModel):
    customer_id: str
    owner: str | None
    segment: str | None
    tier: str | None
    team: str | None
    type: LoyaltyType
    nps: int | None
    csat: int | None
    orders: int
    recent_orders: int = Field(description="orders in [from, to)")
    prior_orders: int = Field(description="orders in the equally long period before from")


class TrapReport(_Paged):
    items: list[TrapRow]


@router.get(
    f"{PREFIX}/satisfaction-trap",
    response_model=TrapReport,
    response_model_by_alias=True,
    responses={200: CSV_RESPONSE},
)
async def satisfaction_trap(
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
) -> BaseModel | Response:
    """The satisfaction trap: satisfied customers (high NPS or CSAT) whose orders in ``[from, to)``
    fell to the decline ratio of the period before, by customer id."""
    rows, total = await reports.satisfaction_traps(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
        thresholds=_settings(request).loyalty_thresholds(),
        limit=limit,
        offset=offset,
    )
    items = [TrapRow.model_validate({**r, "recent_orders": r["recent"], "prior_orders": r["prior"]}) for r in rows]
    report = TrapReport.model_validate(
        {**_head(period), "items": items, "total": total, "limit": limit, "offset": offset}
    )
    return answer(request, format, report, table="items", model=TrapRow, filename="satisfaction-trap")


# ---- suggested churn reasons: accuracy ------------------------------------------------------------------


class ReasonAccuracyRow(BaseModel):
    reason: str = Field(description="the recorded reason")
    churned: int
    suggested: int = Field(description="churns with this recorded reason that had a suggestion")
    correct: int = Field(description="of those, the suggestion named this reason")
    recall: float | None = Field(description="correct / suggested")


class SuggestedRow(BaseModel):
    reason: str = Field(description="the suggested reason")
    suggested: int
    correct: int
    precision: float | None = Field(description="correct / suggested")


class ConfusionRow(BaseModel):
    recorded: str
    suggested: str | None = Field(description="None: no suggestion")
    churns: int


class AccuracyReport(_Paged):
    churned: int
    suggested: int
    coverage: float | None = Field(description="suggested / churned")
    correct: int
    accuracy: float | None = Field(description="correct / suggested")
    per_reason: list[ReasonAccuracyRow]
    per_suggestion: list[SuggestedRow]
    confusion: list[ConfusionRow] = Field(description="(recorded, suggested) cells, paged")


@router.get(
    f"{PREFIX}/reason-suggestions/accuracy",
    response_model=AccuracyReport,
    response_model_by_alias=True,
    responses={200: CSV_RESPONSE},
)
async def suggestion_accuracy(
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
) -> BaseModel | Response:
    """Suggested churn reasons against the reasons recorded, for the churns dated in ``[from, to)``.
    CSV: the confusion cells."""
    overall, per_reason, per_suggestion, cells, total = await reports.suggestion_accuracy(
        session=session, period=period, filters=_filters(tier, segment, owner, team), limit=limit, offset=offset
    )
    report = AccuracyReport.model_validate(
        {
            **_head(period),
            **overall,
            "coverage": ratio(overall["suggested"], overall["churned"]),
            "accuracy": ratio(overall["correct"], overall["suggested"]),
            "per_reason": [
                {
                    "reason": r["reason"],
                    "churned": r["churned"],
                    "suggested": int(r["suggested"] or 0),
                    "correct": int(r["correct"] or 0),
                    "recall": ratio(r["correct"], r["suggested"]),
                }
                for r in per_reason
            ],
            "per_suggestion": [
                {
                    "reason": r["reason"],
                    "suggested": r["suggested"],
                    "correct": int(r["correct"] or 0),
                    "precision": ratio(r["correct"], r["suggested"]),
                }
                for r in per_suggestion
            ],
            "confusion": cells,
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )
    return answer(request, format, report, table="confusion", model=ConfusionRow, filename="reason-suggestion-accuracy")


# ---- per customer --------------------------------------------------------------------------------------


def _not_found(customer_id: str, what: str) -> Problem:
    return not_found(what, detail=f"No {what} for customer {customer_id}.", title="Not found")


class CustomerLoyalty(BaseModel):
    customer_id: str
    as_of: UtcDatetime
    type: LoyaltyType
    behaviour_high: bool
    attitude_high: bool | None = Field(description="None: no NPS or CSAT answer")
    orders: int
    repeat_rate: float | None = Field(description="(orders - 1) / orders")
    tenure_days: float | None = Field(description="days since the first order")
    recent_orders: int = Field(description="orders in the latest trend window")
    prior_orders: int = Field(description="orders in the window before it")
    declining: bool
    share_of_wallet: float | None
    nps: int | None = Field(description="the latest NPS answer")
    csat: int | None = Field(description="the latest CSAT answer")
    satisfaction_trap: bool = Field(description="satisfied, but buying declines")


@router.get("/customers/{customer_id}/loyalty", response_model=CustomerLoyalty, tags=["loyalty"])
async def customer_loyalty(
    customer_id: str,
    request: Request,
    session: SessionDep,
    as_of: Annotated[UtcDatetime | None, Query(description="default: now")] = None,
) -> CustomerLoyalty:
    """The customer's loyalty type (behaviour x attitude) and satisfaction-trap flag (docs/reports.md)."""
    replica = await session.get(Customer, customer_id)
    facts = await read_model.customer_facts(session, customer_id)
    if (replica is None or replica.erased_at is not None) and facts is None:
        raise _not_found(customer_id, "loyalty facts")
    thresholds = _settings(request).loyalty_thresholds()
    at = as_of or utc_now()
    recent, prior = await read_model.order_windows(
        session, customer_id, at, timedelta(days=thresholds.trend_window_days)
    )
    orders = facts.orders if facts else 0
    first = as_utc(facts.first_order_at) if facts and facts.first_order_at else None
    behaviour = Behaviour(
        orders=orders,
        tenure_days=(at - first).total_seconds() / 86400.0 if first else None,
        recent_orders=recent,
        prior_orders=prior,
        share_of_wallet=facts.share_of_wallet if facts else None,
    )
    attitude = Attitude(nps=facts.nps if facts else None, csat=facts.csat if facts else None)
    typed = classify(behaviour, attitude, thresholds)
    return CustomerLoyalty(
        customer_id=customer_id,
        as_of=at,
        type=typed.type,
        behaviour_high=typed.behaviour_high,
        attitude_high=typed.attitude_high,
        orders=orders,
        repeat_rate=typed.repeat_rate,
        tenure_days=behaviour.tenure_days,
        recent_orders=recent,
        prior_orders=prior,
        declining=typed.declining,
        share_of_wallet=behaviour.share_of_wallet,
        nps=attitude.nps,
        csat=attitude.csat,
        satisfaction_trap=typed.satisfaction_trap,
    )


class Evidence(BaseModel):
    event_id: str
    kind: str = Field(description="complaint, complaint_overdue, incident, return, owner_change, price_contact, ...")
    category: str | None
    at: datetime


class ChurnSuggestion(BaseModel):
    customer_id: str
    churned_at: UtcDatetime
    recorded_reason: str | None
    side: str | None
    suggested_reason: str | None = Field(description="None: no signal before the churn pointed to a reason")
    confidence: float | None = Field(description="the suggested reason's votes / all votes")
    votes: dict[str, float]
    evidence: list[Evidence]
    matches: bool | None = Field(description="whether the suggestion names the recorded reason")
    tier: str | None
    historical_value: float | None
    predicted_value: float | None


@router.get("/customers/{customer_id}/churn-suggestion", response_model=ChurnSuggestion, tags=["loyalty"])
async def churn_suggestion(customer_id: str, session: SessionDep) -> ChurnSuggestion:
    """The customer's latest churn with the reason the preceding signals suggest, its evidence and confidence."""
    churn = await read_model.latest_churn(session, customer_id)
    if churn is None:
        raise _not_found(customer_id, "churn")
    return ChurnSuggestion(
        customer_id=customer_id,
        churned_at=churn.churned_at,
        recorded_reason=churn.reason,
        side=churn.side,
        suggested_reason=churn.suggested_reason,
        confidence=churn.suggestion_confidence,
        votes=churn.suggestion_votes,
        evidence=[Evidence.model_validate(e) for e in churn.suggestion_evidence],
        matches=(churn.suggested_reason == churn.reason) if churn.suggested_reason else None,
        tier=churn.tier,
        historical_value=churn.historical_value,
        predicted_value=churn.predicted_value,
    )
