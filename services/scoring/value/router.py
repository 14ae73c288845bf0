"""GET /customers/{id}/value: historical, current, potential and referral value, RFM and the pyramid tier.

Every measure's definition and formula: docs/reports.md (Value).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from servicekit.deps import SessionDep
from services.scoring.http import settings_of
from services.scoring.reports import service as value_reports
from services.scoring.scores.models import CurrentScore
from services.scoring.scores.reads import known
from services.scoring.value import measures
from services.scoring.value.measures import ValueCounters

router = APIRouter(tags=["value"])


# ---- one customer --------------------------------------------------------------------------------------


class HistoricalValue(BaseModel):
    revenue: float = Field(description="total spend to date")
    contacts: int
    complaints: int
    returns: int
    cost_to_serve: float = Field(description="contacts x cost per contact + complaints x ... + returns x ...")
    contribution: float = Field(description="margin x revenue - cost to serve")


class CurrentValue(BaseModel):
    clv: float | None
    p_alive: float | None
    value_tier: str | None = Field(description="tier by CLV, as scored")
    value_model_version: str | None


class PotentialValue(BaseModel):
    wallet_estimate: float | None = Field(description="the customer attribute wallet_estimate")
    share_of_wallet: float | None = Field(description="revenue / wallet estimate")
    potential_value: float | None = Field(description="max(wallet estimate - revenue, 0)")


class ReferralValue(BaseModel):
    referrals: int
    referral_value: float = Field(description="stated amounts + unit value x referrals without one")


class Rfm(BaseModel):
    recency_last_purchase_at: datetime | None
    frequency: int
    monetary: float
    r: int | None = Field(description="1..5, 5 = bought most recently")
    f: int | None
    m: int | None
    segment: str | None


class CustomerValuePublic(BaseModel):
    customer_id: str
    basis: str
    tier: str | None = Field(description="pyramid tier on the basis")
    historical: HistoricalValue
    current: CurrentValue
    potential: PotentialValue
    referral: ReferralValue
    rfm: Rfm


@router.get("/customers/{customer_id}/value", response_model=CustomerValuePublic)
async def customer_value(customer_id: str, session: SessionDep, request: Request) -> CustomerValuePublic:
    """The customer's value as the source defines it: historical (contribution), current (CLV), potential
    (wallet headroom) and referral value, with RFM scores and segment and the pyramid tier on the basis."""
    settings = settings_of(request)
    costs = settings.value_costs()
    row = await known(session, customer_id)
    score = await session.get(CurrentScore, customer_id)
    counters = ValueCounters(
        revenue=row.total_spend,
        contacts=row.contacts,
        complaints=row.complaints_total,
        returns=row.returns,
        referrals=row.referrals,
        referral_amount=row.referral_amount,
        referrals_with_amount=row.referrals_with_amount,
        wallet_estimate=row.wallet_estimate,
    )
    r = f = m = None
    segment = None
    tier: str | None = None
    if row.purchases > 0:
        ranks = await value_reports.customer_ranks(session=session, row=row, costs=costs)
        n = ranks["n"]
        r, f, m = (measures.bucket(ranks[k], n) for k in ("earlier", "fewer", "less"))
        segment = measures.rfm_segment(r, f, m)
        if settings.value_basis == measures.CONTRIBUTION:
            tier = measures.tier_for_rank(ranks["ahead"] + 1, n, settings.tier_shares)
    if settings.value_basis == measures.CLV:
        tier = None if score is None else score.value_tier
    return CustomerValuePublic(
        customer_id=customer_id,
        basis=settings.value_basis,
        tier=tier,
        historical=HistoricalValue(
            revenue=row.total_spend,
            contacts=row.contacts,
            complaints=row.complaints_total,
            returns=row.returns,
            cost_to_serve=measures.cost_to_serve(counters, costs),
            contribution=measures.contribution(counters, costs),
        ),
        current=CurrentValue(
            clv=None if score is None else score.clv,
            p_alive=None if score is None else score.p_alive,
            value_tier=None if score is None else score.value_tier,
            value_model_version=None if score is None else score.value_model_version,
        ),
        potential=PotentialValue(
            wallet_estimate=row.wallet_estimate,
            share_of_wallet=measures.share_of_wallet(counters),
            potential_value=measures.potential_value(counters),
        ),
        referral=ReferralValue(referrals=row.referrals, referral_value=measures.referral_value(counters, costs)),
        rfm=Rfm(
            recency_last_purchase_at=row.last_purchase_at,
            frequency=row.purchases,
            monetary=row.total_spend,
            r=r,
            f=f,
            m=m,
            segment=segment,
        ),
    )
