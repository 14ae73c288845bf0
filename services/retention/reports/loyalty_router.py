"""The loyalty report routes (/reports/retention/loyalty, satisfaction traps, suggestion accuracy) and the
per-customer loyalty and churn-suggestion views. Definitions: docs/reports.md, "Retention".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, not_found
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from servicekit.types import as_utc
from services.retention.db import UtcDatetime
from services.retention.replica.models import Customer
from services.retention.reports import facts as read_model
from services.retention.reports import loyalty_queries
from services.retention.reports.loyalty import Attitude, Behaviour, LoyaltyType, classify
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


class LoyaltyRow(BaseModel):
    type: LoyaltyType
    customers: int
    share: float | None = Field(description="customers / all customers measured")


class LoyaltyReport(Report):
    customers: int = Field(description="customers now (active or won back) matching the filters")
    repeat_rate: float | None = Field(description="customers with 2+ orders before to / customers with 1+")
    satisfaction_traps: int = Field(description="satisfied customers whose buying declined")
    items: list[LoyaltyRow]


@report_route(router, f"{PREFIX}/loyalty", LoyaltyReport, CsvTable("items", LoyaltyRow, "loyalty"))
async def loyalty_distribution(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Customers per loyalty type (true, latent, spurious/inertia, none, unmeasured), measured at ``to``;
    the trend compares orders in ``[from, to)`` with the equally long period before."""
    result = await loyalty_queries.loyalty_distribution(
        session=session,
        period=period,
        filters=filters_of(tier, segment, owner, team),
        thresholds=settings_of(request).loyalty_thresholds(),
    )
    return loyalty_queries.distribution_fields(result)


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


class TrapReport(Paged):
    items: list[TrapRow]


@report_route(router, f"{PREFIX}/satisfaction-trap", TrapReport, CsvTable("items", TrapRow, "satisfaction-trap"))
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
) -> ReportFields:
    """The satisfaction trap: satisfied customers (high NPS or CSAT) whose orders in ``[from, to)``
    fell to the decline ratio of the period before, by customer id."""
    rows, total = await loyalty_queries.satisfaction_traps(
        session=session,
        period=period,
        filters=filters_of(tier, segment, owner, team),
        thresholds=settings_of(request).loyalty_thresholds(),
        limit=limit,
        offset=offset,
    )
    items = [TrapRow.model_validate({**r, "recent_orders": r["recent"], "prior_orders": r["prior"]}) for r in rows]
    return {"items": items, "total": total}


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


class AccuracyReport(Paged):
    churned: int
    suggested: int
    coverage: float | None = Field(description="suggested / churned")
    correct: int
    accuracy: float | None = Field(description="correct / suggested")
    per_reason: list[ReasonAccuracyRow]
    per_suggestion: list[SuggestedRow]
    confusion: list[ConfusionRow] = Field(description="(recorded, suggested) cells, paged")


@report_route(
    router,
    f"{PREFIX}/reason-suggestions/accuracy",
    AccuracyReport,
    CsvTable("confusion", ConfusionRow, "reason-suggestion-accuracy"),
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
) -> ReportFields:
    """Suggested churn reasons against the reasons recorded, for the churns dated in ``[from, to)``.
    CSV: the confusion cells."""
    overall, per_reason, per_suggestion, cells, total = await loyalty_queries.suggestion_accuracy(
        session=session, period=period, filters=filters_of(tier, segment, owner, team), limit=limit, offset=offset
    )
    return {
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
    }


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
    thresholds = settings_of(request).loyalty_thresholds()
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
