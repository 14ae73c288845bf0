"""Campaign routes: the offer catalogue, campaigns (create, list, launch, cancel), members and the report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from servicekit import runtime_settings
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.retention.campaigns import launch as launches
from services.retention.campaigns import report as reports
from services.retention.campaigns import service
from services.retention.campaigns.models import (
    CampaignCreate,
    CampaignMemberPublic,
    CampaignMembersPublic,
    CampaignPublic,
    CampaignReport,
    CampaignsPublic,
    CampaignStatus,
    OfferCreate,
    OfferPublic,
    OffersPublic,
)
from services.retention.settings import RetentionSettings
from services.retention.touches.contact_policy import Verdict

router = APIRouter(tags=["campaigns"])


def _settings(request: Request) -> RetentionSettings:
    settings: RetentionSettings = request.app.state.settings
    return settings


@router.post("/offers", response_model=OfferPublic, status_code=201)
async def create_offer(body: OfferCreate, session: SessionDep) -> OfferPublic:
    """Add an offer to the catalogue: its kind and value, what each touch and each redemption costs, and
    how long after the touch it can be redeemed. The code must be unique (409 otherwise)."""
    offer = await service.create_offer(session=session, body=body)
    public = OfferPublic.model_validate(offer)
    await session.commit()
    return public


@router.get("/offers", response_model=OffersPublic)
async def list_offers(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> OffersPublic:
    items, total = await service.list_offers(session=session, limit=limit, offset=offset)
    return OffersPublic(items=[OfferPublic.model_validate(o) for o in items], total=total, limit=limit, offset=offset)


@router.get("/offers/{offer_id}", response_model=OfferPublic)
async def get_offer(offer_id: str, session: SessionDep) -> OfferPublic:
    return OfferPublic.model_validate(await service.get_offer(session=session, offer_id=offer_id))


@router.post("/offers/{offer_id}/retire", response_model=OfferPublic)
async def retire_offer(offer_id: str, session: SessionDep) -> OfferPublic:
    """No new campaign may use the offer; campaigns that use it keep it."""
    offer = await service.retire_offer(session=session, offer_id=offer_id)
    public = OfferPublic.model_validate(offer)
    await session.commit()
    return public


@router.post("/campaigns", response_model=CampaignPublic, status_code=201)
async def create_campaign(body: CampaignCreate, session: SessionDep, request: Request) -> CampaignPublic:
    """Schedule a campaign: an audience (a saved segment, or a filter saved as one), an offer, a channel, a
    start time and the share of the audience held back as a control. It launches at ``starts_at``."""
    client = service.segment_client(_settings(request))
    try:
        campaign = await service.create_campaign(session=session, body=body, client=client)
    finally:
        await client.aclose()
    public = CampaignPublic.model_validate(campaign)
    await session.commit()
    return public


@router.get("/campaigns", response_model=CampaignsPublic)
async def list_campaigns(
    session: SessionDep,
    status: Annotated[CampaignStatus | None, Query()] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> CampaignsPublic:
    items, total = await service.list_campaigns(session=session, status=status, limit=limit, offset=offset)
    return CampaignsPublic(
        items=[CampaignPublic.model_validate(c) for c in items], total=total, limit=limit, offset=offset
    )


@router.get("/campaigns/{campaign_id}", response_model=CampaignPublic)
async def get_campaign(campaign_id: str, session: SessionDep) -> CampaignPublic:
    return CampaignPublic.model_validate(await service.get_campaign(session=session, campaign_id=campaign_id))


@router.post("/campaigns/{campaign_id}/launch", response_model=CampaignPublic)
async def launch_campaign(campaign_id: str, session: SessionDep, request: Request) -> CampaignPublic:
    """Launch now rather than at ``starts_at``. Launching a launched campaign changes nothing; a cancelled
    one is a 409."""
    settings = await runtime_settings.current(session, _settings(request))
    client = service.segment_client(settings)
    try:
        campaign = await launches.launch(
            session=session, campaign_id=campaign_id, client=client, max_audience=settings.campaign_max_audience
        )
    finally:
        await client.aclose()
    public = CampaignPublic.model_validate(campaign)
    await session.commit()
    return public


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignPublic)
async def cancel_campaign(campaign_id: str, session: SessionDep) -> CampaignPublic:
    """Cancel a scheduled campaign (a launched one is a 409: its touches are out)."""
    campaign = await service.cancel(session=session, campaign_id=campaign_id)
    public = CampaignPublic.model_validate(campaign)
    await session.commit()
    return public


@router.get("/campaigns/{campaign_id}/members", response_model=CampaignMembersPublic)
async def campaign_members(
    campaign_id: str,
    session: SessionDep,
    group: Annotated[str | None, Query(pattern=r"^(treated|holdout)$")] = None,
    verdict: Annotated[Verdict | None, Query(description="allowed, or a block reason")] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> CampaignMembersPublic:
    """The campaign's customers by id: their group, and for the treated the contact policy's verdict."""
    items, total = await service.list_members(
        session=session,
        campaign_id=campaign_id,
        group=group,
        verdict=verdict.value if verdict is not None else None,
        limit=limit,
        offset=offset,
    )
    return CampaignMembersPublic(
        items=[
            CampaignMemberPublic(
                customer_id=m.customer_id,
                group=m.arm,
                verdict=m.verdict,
                touch_id=m.touch_id,
                enrolled_at=m.enrolled_at,
            )
            for m in items
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/campaigns/{campaign_id}/report", response_model=CampaignReport)
async def campaign_report(campaign_id: str, session: SessionDep) -> CampaignReport:
    """Reached, blocked (by reason), redeemed, cost, value won back, ROI, and the uplift of the treated
    group's won-back rate over the holdout's with a 95% interval (docs/campaigns.md)."""
    return await reports.report(session=session, campaign_id=campaign_id)
