"""Win-back campaigns: the offer catalogue and the campaigns themselves. Domain functions never commit (the
route or the loop does). Their launch: launch.py; their report: report.py. docs/campaigns.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.clock import utc_now
from servicekit.problems import Problem, field_error, not_found
from servicekit.sql import chunks
from servicekit.types import as_utc
from services.retention.campaigns import churn
from services.retention.campaigns.audience import SegmentClient
from services.retention.campaigns.models import (
    Campaign,
    CampaignCreate,
    CampaignMember,
    CampaignStatus,
    Offer,
    OfferCreate,
)
from services.retention.db import new_id
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports.models import ChurnFact
from services.retention.settings import RetentionSettings

CAMPAIGN_ACTION = "campaign_offer"  # the action recorded on a campaign's touches
BACK_STATUSES = ("active", "won_back")  # a status change to these within the window: reactivated
CHURNED = "churned"
CONFIDENCE = 0.95


def reason_of(campaign_id: str) -> str:
    """The reason recorded on the campaign's touches (the customer's touch list shows which campaign)."""
    return f"campaign:{campaign_id}"


def segment_client(settings: RetentionSettings) -> SegmentClient:
    return SegmentClient(settings.scoring_url, timeout_s=settings.scoring_timeout_s)


# ---- offers -----------------------------------------------------------------------------------------------


async def create_offer(*, session: AsyncSession, body: OfferCreate) -> Offer:
    taken = (await session.execute(select(Offer.id).where(col(Offer.code) == body.code))).first()
    if taken:
        raise Problem(409, "Offer code taken", code="conflict", errors=[field_error("code", "an offer has this code")])
    offer = Offer(id=new_id(), **body.model_dump(mode="json"), created_at=utc_now())
    session.add(offer)
    await session.flush()
    return offer


async def get_offer(*, session: AsyncSession, offer_id: str, field: str = "id") -> Offer:
    offer = await session.get(Offer, offer_id)
    if offer is None:
        if field == "id":
            raise not_found("Offer", offer_id)
        raise Problem(422, "Unknown offer", code="validation", errors=[field_error(field, "unknown offer")])
    return offer


async def list_offers(*, session: AsyncSession, limit: int, offset: int) -> tuple[list[Offer], int]:
    total = (await session.execute(select(func.count()).select_from(Offer))).scalar_one()
    rows = await session.execute(
        select(Offer).order_by(col(Offer.created_at).desc(), col(Offer.id)).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total


async def retire_offer(*, session: AsyncSession, offer_id: str) -> Offer:
    """No new campaign may use it; campaigns that did keep it (their reports need its costs)."""
    offer = await get_offer(session=session, offer_id=offer_id)
    offer.active = False
    await session.flush()
    return offer


# ---- campaigns --------------------------------------------------------------------------------------------


async def create_campaign(
    *, session: AsyncSession, body: CampaignCreate, client: SegmentClient, now: datetime | None = None
) -> Campaign:
    """Check the offer and the audience (a filter is saved as a segment in the scoring service) and schedule."""
    offer = await get_offer(session=session, offer_id=body.offer_id, field="offer_id")
    if not offer.active:
        raise Problem(422, "Offer retired", code="validation", errors=[field_error("offer_id", "offer retired")])
    if body.segment_id is not None:
        if not await client.exists(body.segment_id):
            raise Problem(
                422, "Unknown segment", code="validation", errors=[field_error("segment_id", "no such segment")]
            )
        segment_id = body.segment_id
    else:
        segment_id = await client.save_filter(name=f"campaign: {body.name}", conditions=list(body.filter or []))
    now = now or utc_now()
    campaign = Campaign(
        id=new_id(),
        name=body.name,
        offer_id=offer.id,
        channel=body.channel.value,
        template=body.template,
        segment_id=segment_id,
        member_tiers=sorted(set(body.member_tiers)),
        churn=body.churn.model_dump(mode="json") if body.churn is not None else None,
        holdout_share=body.holdout_share,
        starts_at=as_utc(body.starts_at) if body.starts_at is not None else now,
        measure_days=body.measure_days,
        sequence=body.sequence.model_dump(mode="json", by_alias=True) if body.sequence is not None else None,
        status=CampaignStatus.scheduled.value,
        blocked_by={},
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    await session.flush()
    return campaign


async def get_campaign(*, session: AsyncSession, campaign_id: str, for_update: bool = False) -> Campaign:
    query = select(Campaign).where(col(Campaign.id) == campaign_id)
    if for_update:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise not_found("Campaign", campaign_id)
    return found


async def list_campaigns(
    *, session: AsyncSession, status: CampaignStatus | None, limit: int, offset: int
) -> tuple[list[Campaign], int]:
    where = [col(Campaign.status) == status.value] if status is not None else []
    total = (await session.execute(select(func.count()).select_from(Campaign).where(*where))).scalar_one()
    query = (
        select(Campaign)
        .where(*where)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id))
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(query)).scalars()), total


async def cancel(*, session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await get_campaign(session=session, campaign_id=campaign_id, for_update=True)
    if campaign.status == CampaignStatus.launched.value:
        raise Problem(
            409, "Campaign already launched", code="conflict", errors=[field_error("status", "already launched")]
        )
    if campaign.status == CampaignStatus.scheduled.value:
        campaign.status = CampaignStatus.cancelled.value
        campaign.version += 1
        campaign.updated_at = utc_now()
        await session.flush()
    return campaign


async def list_members(
    *, session: AsyncSession, campaign_id: str, group: str | None, verdict: str | None, limit: int, offset: int
) -> tuple[list[CampaignMember], int]:
    await get_campaign(session=session, campaign_id=campaign_id)
    where = [col(CampaignMember.campaign_id) == campaign_id]
    if group is not None:
        where.append(col(CampaignMember.arm) == group)
    if verdict is not None:
        where.append(col(CampaignMember.verdict) == verdict)
    total = (await session.execute(select(func.count()).select_from(CampaignMember).where(*where))).scalar_one()
    query = select(CampaignMember).where(*where).order_by(col(CampaignMember.customer_id)).limit(limit).offset(offset)
    return list((await session.execute(query)).scalars()), total


async def churn_matching(
    session: AsyncSession, customer_ids: Sequence[str], rule: churn.ChurnFilter, now: datetime
) -> set[str]:
    """The customers among `customer_ids` whose latest recorded churn matches the filter."""
    latest: dict[str, churn.Churn] = {}
    for chunk in chunks(customer_ids):
        rows = await session.execute(
            select(
                ChurnFact.customer_id,
                ChurnFact.churned_at,
                ChurnFact.reason,
                ChurnFact.historical_value,
                ChurnFact.predicted_value,
            ).where(col(ChurnFact.customer_id).in_(chunk))
        )
        for customer_id, at, reason, historical, predicted in rows:
            found = churn.Churn(as_utc(at), reason, historical, predicted)
            if customer_id not in latest or found.at > latest[customer_id].at:
                latest[customer_id] = found
    return {c for c in customer_ids if churn.matches(latest.get(c), rule, now)}


async def replica_facts(session: AsyncSession, ids: list[str]) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """Erased customers (left out of the audience), the tier each customer's contact cap follows (the
    account-managed tier of the replica, else the latest scored tier) and each customer's owner."""
    erased: set[str] = set()
    tiers: dict[str, str] = {}
    owners: dict[str, str] = {}
    for chunk in chunks(ids):
        for customer_id, tier, erased_at, owner in await session.execute(
            select(Customer.customer_id, Customer.tier, Customer.erased_at, Customer.owner).where(
                col(Customer.customer_id).in_(chunk)
            )
        ):
            if owner:
                owners[customer_id] = owner
            if erased_at is not None:
                erased.add(customer_id)
            if tier:
                tiers[customer_id] = tier
        for customer_id, tier in await session.execute(
            select(CustomerScore.customer_id, CustomerScore.value_tier).where(col(CustomerScore.customer_id).in_(chunk))
        ):
            if tier and customer_id not in tiers:
                tiers[customer_id] = tier
    return erased, tiers, owners
