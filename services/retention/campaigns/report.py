"""A win-back campaign's report: reached, blocked, redeemed, cost, value won back, ROI and the uplift of the
treated group over the holdout. docs/campaigns.md.

Outcomes come from what retention already consumes: orders (interaction.recorded of type purchase, in the
read model's fact_events) and status changes (customer.status_changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.types import as_utc
from services.retention.campaigns import stats
from services.retention.campaigns.models import (
    CampaignMember,
    CampaignReport,
    CampaignStatus,
    GroupOutcomes,
    OfferRedemption,
    UpliftPublic,
)
from services.retention.campaigns.service import (
    BACK_STATUSES,
    CHURNED,
    CONFIDENCE,
    get_campaign,
    get_offer,
)
from services.retention.replica.models import StatusChange
from services.retention.reports.models import ORDER, FactEvent
from services.retention.touches import contact_policy as cp

# ---- the report -------------------------------------------------------------------------------------------


def _orders(start: datetime, end: datetime) -> Any:
    return (
        select(FactEvent.id)
        .where(
            col(FactEvent.customer_id) == col(CampaignMember.customer_id),
            col(FactEvent.kind) == ORDER,
            col(FactEvent.at) >= start,
            col(FactEvent.at) < end,
        )
        .exists()
    )


def _coded(code: str, start: datetime, end: datetime) -> Any:
    """An order carrying this offer's code within the window: an exact redemption."""
    return (
        select(OfferRedemption.event_id)
        .where(
            col(OfferRedemption.customer_id) == col(CampaignMember.customer_id),
            col(OfferRedemption.offer_code) == code,
            col(OfferRedemption.at) >= start,
            col(OfferRedemption.at) < end,
        )
        .exists()
    )


def _uncoded_orders(start: datetime, end: datetime) -> Any:
    """An order without any offer's code within the window: attributed to the offer (an order carrying
    another offer's code redeems that one, not this)."""
    coded = select(OfferRedemption.event_id).where(col(OfferRedemption.event_id) == col(FactEvent.event_id)).exists()
    return (
        select(FactEvent.id)
        .where(
            col(FactEvent.customer_id) == col(CampaignMember.customer_id),
            col(FactEvent.kind) == ORDER,
            col(FactEvent.at) >= start,
            col(FactEvent.at) < end,
            ~coded,
        )
        .exists()
    )


def _status_to(statuses: Sequence[str], start: datetime, end: datetime) -> Any:
    return (
        select(StatusChange.id)
        .where(
            col(StatusChange.customer_id) == col(CampaignMember.customer_id),
            col(StatusChange.status).in_(statuses),
            col(StatusChange.at) >= start,
            col(StatusChange.at) < end,
        )
        .exists()
    )


async def report(*, session: AsyncSession, campaign_id: str) -> CampaignReport:
    """Reached, blocked, redeemed, cost, value won back, ROI and the uplift of treated over holdout."""
    campaign = await get_campaign(session=session, campaign_id=campaign_id)
    offer = await get_offer(session=session, offer_id=campaign.offer_id, field="offer_id")
    empty = GroupOutcomes(customers=0, won_back=0, churned=0, value=0.0, won_back_rate=None)
    if campaign.launched_at is None:
        return CampaignReport(
            campaign_id=campaign.id,
            status=CampaignStatus(campaign.status),
            launched_at=None,
            window_end=None,
            audience=0,
            reached=0,
            blocked=0,
            blocked_by={},
            redeemed=0,
            treated=empty,
            holdout=empty,
            cost=0.0,
            value_won_back=0.0,
            incremental_value=None,
            roi=None,
            incremental_roi=None,
            uplift=None,
        )
    start = as_utc(campaign.launched_at)
    end = start + timedelta(days=campaign.measure_days)
    valid_end = start + timedelta(days=offer.valid_days)
    value = (
        select(func.coalesce(func.sum(FactEvent.amount), 0.0))
        .where(
            col(FactEvent.customer_id) == col(CampaignMember.customer_id),
            col(FactEvent.kind) == ORDER,
            col(FactEvent.at) >= start,
            col(FactEvent.at) < end,
        )
        .scalar_subquery()
    )
    won_back = or_(_orders(start, end), _status_to(BACK_STATUSES, start, end))
    allowed = col(CampaignMember.verdict) == cp.Verdict.allowed.value
    exact = _coded(offer.code, start, valid_end)
    query = (
        select(
            CampaignMember.arm,
            func.count().label("customers"),
            func.sum(case((won_back, 1), else_=0)).label("won_back"),
            func.sum(case((_status_to((CHURNED,), start, end), 1), else_=0)).label("churned"),
            func.sum(value).label("value"),
            func.sum(case((allowed, 1), else_=0)).label("reached"),
            func.sum(case((col(CampaignMember.verdict).is_(None), 1), else_=0)).label("pending"),
            func.sum(CampaignMember.touches).label("touches"),
            func.sum(case((and_(allowed, or_(exact, _uncoded_orders(start, valid_end))), 1), else_=0)).label(
                "redeemed"
            ),
            func.sum(case((and_(allowed, exact), 1), else_=0)).label("redeemed_exact"),
        )
        .where(col(CampaignMember.campaign_id) == campaign.id)
        .group_by(CampaignMember.arm)
    )
    rows = {r.arm: r for r in (await session.execute(query)).all()}

    def group(arm: str) -> GroupOutcomes:
        r = rows.get(arm)
        if r is None:
            return empty
        n = int(r.customers)
        return GroupOutcomes(
            customers=n,
            won_back=int(r.won_back or 0),
            churned=int(r.churned or 0),
            value=round(float(r.value or 0.0), 2),
            won_back_rate=(int(r.won_back or 0) / n) if n else None,
        )

    treated, holdout = group(stats.TREATED), group(stats.HOLDOUT)
    treated_row = rows.get(stats.TREATED)
    reached = int(treated_row.reached or 0) if treated_row is not None else 0
    redeemed = int(treated_row.redeemed or 0) if treated_row is not None else 0
    pending = int(treated_row.pending or 0) if treated_row is not None else 0
    exact_n = int(treated_row.redeemed_exact or 0) if treated_row is not None else 0
    sent = int(treated_row.touches or 0) if treated_row is not None else 0
    blocked_by = await _blocked_by(session, campaign.id)
    money = stats.money(
        reached=sent,
        redeemed=redeemed,
        cost_per_touch=offer.cost_per_touch,
        cost_per_redemption=offer.cost_per_redemption,
        treated_value=treated.value,
        treated_n=treated.customers,
        holdout_value=holdout.value,
        holdout_n=holdout.customers,
    )
    lift = stats.uplift(treated.won_back, treated.customers, holdout.won_back, holdout.customers, confidence=CONFIDENCE)
    return CampaignReport(
        campaign_id=campaign.id,
        status=CampaignStatus(campaign.status),
        launched_at=start,
        window_end=end,
        audience=treated.customers + holdout.customers,
        reached=reached,
        blocked=sum(blocked_by.values()),
        blocked_by=blocked_by,
        pending=pending,
        touches=sent,
        redeemed=redeemed,
        redeemed_exact=exact_n,
        treated=treated,
        holdout=holdout,
        cost=round(money.cost, 2),
        value_won_back=round(money.value_won_back, 2),
        incremental_value=None if money.incremental_value is None else round(money.incremental_value, 2),
        roi=money.roi,
        incremental_roi=money.incremental_roi,
        uplift=None
        if lift is None
        else UpliftPublic(
            difference=lift.difference,
            low=lift.low,
            high=lift.high,
            confidence=lift.confidence,
            p_value=lift.p_value,
            method=lift.method,
        ),
    )


async def _blocked_by(session: AsyncSession, campaign_id: str) -> dict[str, int]:
    """Treated customers no touch reached, by the latest verdict (a sequence's touches run after launch)."""
    query = (
        select(CampaignMember.verdict, func.count())
        .where(
            col(CampaignMember.campaign_id) == campaign_id,
            col(CampaignMember.arm) == stats.TREATED,
            col(CampaignMember.verdict).is_not(None),
            col(CampaignMember.verdict) != cp.Verdict.allowed.value,
        )
        .group_by(CampaignMember.verdict)
    )
    return {str(verdict): int(n) for verdict, n in (await session.execute(query)).all()}
