"""Win-back campaigns: the offer catalogue, campaigns, their launch and their report. Domain functions
never commit (the route or the loop does). docs/campaigns.md.

Launch: the audience is read from the scoring service's segment (audience.py) before the launch's
transaction; in it the campaign row is locked and, only if still scheduled, every customer is drawn into
the treated group or the holdout (stats.assign_group), each treated customer's touch is checked against
consent and the contact policy and recorded as a touch (allowed, or blocked with the reason), and the
allowed touches leave as campaign.touch_requested events and signed webhooks, with campaign.launched, all
in that one transaction. A second launch (a retry, another replica's loop) finds the campaign launched.

Outcomes come from what retention already consumes: orders (interaction.recorded of type purchase, in the
read model's fact_events) and status changes (customer.status_changed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import and_, case, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.retention import CampaignLaunched, CampaignTouchRequested
from servicekit.background import every
from servicekit.clock import utc_now
from servicekit.db import Database, chunks
from servicekit.events.envelope import EventData
from servicekit.problems import Problem, field_error, not_found
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.campaigns import stats
from services.retention.campaigns.audience import AudienceMember, SegmentClient
from services.retention.campaigns.models import (
    Campaign,
    CampaignCreate,
    CampaignMember,
    CampaignReport,
    CampaignStatus,
    GroupOutcomes,
    Offer,
    OfferCreate,
    UpliftPublic,
)
from services.retention.db import new_id
from services.retention.member_tiers import service as member_tiers
from services.retention.publishing import publish
from services.retention.replica.models import Customer, CustomerScore, StatusChange
from services.retention.reports.models import ORDER, FactEvent
from services.retention.settings import RetentionSettings
from services.retention.touches import contact_policy as cp
from services.retention.touches import service as touches
from services.retention.touches.models import ConsentReplica, Touch

log = logging.getLogger("retention.campaigns")

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
        holdout_share=body.holdout_share,
        starts_at=as_utc(body.starts_at) if body.starts_at is not None else now,
        measure_days=body.measure_days,
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


# ---- launch -----------------------------------------------------------------------------------------------


async def launch(
    *,
    session: AsyncSession,
    campaign_id: str,
    client: SegmentClient,
    max_audience: int,
    now: datetime | None = None,
) -> Campaign:
    """Launch a scheduled campaign now, in a route's session (idempotent: a launched one is returned as it
    is; a cancelled one is a 409). The audience is read with no transaction open; the caller commits."""
    campaign = await _launchable(session, campaign_id)
    if campaign.status != CampaignStatus.scheduled.value:
        return campaign
    segment_id = campaign.segment_id
    await session.rollback()  # no transaction stays open while the scoring service answers
    audience = await client.members(segment_id, limit=max_audience)
    return await launch_with(session=session, campaign_id=campaign_id, audience=audience, now=now)


async def _launchable(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await get_campaign(session=session, campaign_id=campaign_id)
    if campaign.status == CampaignStatus.cancelled.value:
        raise Problem(409, "Campaign cancelled", code="conflict", errors=[field_error("status", "cancelled")])
    return campaign


async def launch_with(
    *, session: AsyncSession, campaign_id: str, audience: Sequence[AudienceMember], now: datetime | None = None
) -> Campaign:
    """Lock the campaign and, if it is still scheduled, launch it over this audience."""
    campaign = await get_campaign(session=session, campaign_id=campaign_id, for_update=True)
    if campaign.status != CampaignStatus.scheduled.value:
        return campaign  # launched (a retry, another replica) or cancelled meanwhile
    offer = await get_offer(session=session, offer_id=campaign.offer_id, field="offer_id")
    await apply_launch(session, campaign, offer, audience, now=now or utc_now())
    return campaign


async def apply_launch(
    session: AsyncSession, campaign: Campaign, offer: Offer, audience: Sequence[AudienceMember], *, now: datetime
) -> None:
    """Members, touches and events of a locked, scheduled campaign, in the caller's transaction."""
    wanted = {m.customer_id: m for m in audience}
    if campaign.member_tiers:
        member_tier = await member_tiers.tiers_of(session, list(wanted))
        wanted = {c: m for c, m in wanted.items() if member_tier[c] in campaign.member_tiers}
    erased, tiers = await _replica_facts(session, list(wanted))
    members: list[dict[str, Any]] = []
    touch_rows: list[dict[str, Any]] = []
    events: list[EventData] = []
    treated_ids = []
    for customer_id in sorted(wanted):
        if customer_id in erased:
            continue
        arm = stats.assign_group(campaign.id, customer_id, campaign.holdout_share)
        if arm == stats.TREATED:
            treated_ids.append(customer_id)
        else:
            members.append(_member(campaign.id, customer_id, stats.HOLDOUT, None, None, now))
    verdicts = await _screen(session, treated_ids, channel=campaign.channel, tiers=tiers, wanted=wanted, now=now)
    valid_until = now + timedelta(days=offer.valid_days)
    blocked_by: dict[str, int] = {}
    for customer_id in treated_ids:
        verdict = verdicts[customer_id]
        touch_id = new_id()
        allowed = verdict is cp.Verdict.allowed
        touch_rows.append(
            {
                "id": touch_id,
                "customer_id": customer_id,
                "alert_id": None,
                "task_id": None,
                "reason": reason_of(campaign.id),
                "action": CAMPAIGN_ACTION,
                "channel": campaign.channel,
                "allowed": allowed,
                "verdict": verdict.value,
                "at": now,
                "created_at": now,
            }
        )
        members.append(_member(campaign.id, customer_id, stats.TREATED, verdict.value, touch_id, now))
        if allowed:
            events.append(
                CampaignTouchRequested(
                    touch_id=touch_id,
                    campaign_id=campaign.id,
                    customer_id=customer_id,
                    offer_id=offer.id,
                    offer_code=offer.code,
                    offer_kind=offer.kind,
                    offer_value=offer.value,
                    channel=campaign.channel,
                    template=campaign.template,
                    valid_until=valid_until,
                    at=now,
                )
            )
        else:
            blocked_by[verdict.value] = blocked_by.get(verdict.value, 0) + 1
    for rows, table in ((touch_rows, Touch.__table__), (members, CampaignMember.__table__)):  # type: ignore[attr-defined]
        for start in range(0, len(rows), 1000):
            await session.execute(insert(table), rows[start : start + 1000])
    campaign.audience = len(members)
    campaign.treated = len(treated_ids)
    campaign.holdout = len(members) - len(treated_ids)
    campaign.blocked = sum(blocked_by.values())
    campaign.reached = campaign.treated - campaign.blocked
    campaign.blocked_by = blocked_by
    campaign.status = CampaignStatus.launched.value
    campaign.launched_at = now
    campaign.version += 1
    campaign.updated_at = now
    events.append(
        CampaignLaunched(
            campaign_id=campaign.id,
            offer_id=offer.id,
            segment_id=campaign.segment_id,
            channel=campaign.channel,
            audience=campaign.audience,
            treated=campaign.treated,
            holdout=campaign.holdout,
            reached=campaign.reached,
            blocked=campaign.blocked,
            blocked_by=blocked_by,
            at=now,
        )
    )
    await publish(UnitOfWork(session), *events)  # outbox and webhook deliveries, in this transaction
    await session.flush()
    log.info(
        "campaign launched",
        extra={"campaign_id": campaign.id, "audience": campaign.audience, "reached": campaign.reached},
    )


def _member(
    campaign_id: str, customer_id: str, arm: str, verdict: str | None, touch_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "campaign_id": campaign_id,
        "customer_id": customer_id,
        "arm": arm,
        "verdict": verdict,
        "touch_id": touch_id,
        "enrolled_at": now,
    }


async def _replica_facts(session: AsyncSession, ids: list[str]) -> tuple[set[str], dict[str, str]]:
    """Erased customers (left out of the audience) and the tier each customer's contact cap follows:
    the account-managed tier of the replica, else the latest scored tier."""
    erased: set[str] = set()
    tiers: dict[str, str] = {}
    for chunk in chunks(ids):
        for customer_id, tier, erased_at in await session.execute(
            select(Customer.customer_id, Customer.tier, Customer.erased_at).where(col(Customer.customer_id).in_(chunk))
        ):
            if erased_at is not None:
                erased.add(customer_id)
            if tier:
                tiers[customer_id] = tier
        for customer_id, tier in await session.execute(
            select(CustomerScore.customer_id, CustomerScore.value_tier).where(col(CustomerScore.customer_id).in_(chunk))
        ):
            if tier and customer_id not in tiers:
                tiers[customer_id] = tier
    return erased, tiers


async def _screen(
    session: AsyncSession,
    ids: list[str],
    *,
    channel: str,
    tiers: dict[str, str],
    wanted: dict[str, AudienceMember],
    now: datetime,
) -> dict[str, cp.Verdict]:
    """The contact policy's verdict on a touch now for each customer (consent, quiet hours, cap)."""
    rules = touches.policy()
    contacts: dict[str, cp.CustomerContact] = {}
    for chunk in chunks(ids):
        for replica in (
            await session.execute(select(ConsentReplica).where(col(ConsentReplica.customer_id).in_(chunk)))
        ).scalars():
            contacts[replica.customer_id] = touches.contact_of(replica)
    windows = [c.window for c in (*rules.tier_caps.values(), rules.default_cap) if c is not None]
    windows += [c.cap.window for c in contacts.values() if c.cap is not None]
    previous: dict[str, list[datetime]] = {}
    if windows:
        widest = max(windows)
        for chunk in chunks(ids):
            for customer_id, at in await session.execute(
                select(Touch.customer_id, Touch.at).where(
                    col(Touch.customer_id).in_(chunk),
                    col(Touch.allowed).is_(True),
                    col(Touch.at) > now - widest,
                    col(Touch.at) < now + widest,
                )
            ):
                previous.setdefault(customer_id, []).append(as_utc(at))
    verdicts = {}
    for customer_id in ids:
        tier = tiers.get(customer_id) or wanted[customer_id].value_tier
        verdicts[customer_id] = cp.evaluate(
            channel=channel,
            at=now,
            contact=contacts.get(customer_id, cp.CustomerContact()),
            policy=rules,
            tier=tier,
            previous=previous.get(customer_id, ()),
        )
    return verdicts


async def launch_due(database: Database, settings: RetentionSettings, *, now: datetime | None = None) -> int:
    """Launch every scheduled campaign whose start has come; how many launched."""
    at = now or utc_now()
    async with database.transaction() as session:
        due = list(
            (
                await session.execute(
                    select(Campaign.id).where(
                        col(Campaign.status) == CampaignStatus.scheduled.value, col(Campaign.starts_at) <= at
                    )
                )
            ).scalars()
        )
    launched = 0
    for campaign_id in due:
        client = segment_client(settings)
        try:
            async with database.transaction() as session:
                segment_id = (await get_campaign(session=session, campaign_id=campaign_id)).segment_id
            audience = await client.members(segment_id, limit=settings.campaign_max_audience)
            async with database.transaction() as session:
                campaign = await launch_with(session=session, campaign_id=campaign_id, audience=audience)
                launched += int(campaign.launched_at is not None and as_utc(campaign.launched_at) >= at)
        except Problem as exc:
            log.warning("campaign launch failed", extra={"campaign_id": campaign_id, "status": exc.status})
        finally:
            await client.aclose()
    return launched


async def run_campaigns(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings

    async def one_round() -> None:
        await launch_due(database, settings)

    await every(settings.campaign_interval_s, "retention.campaigns", one_round)


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
    query = (
        select(
            CampaignMember.arm,
            func.count().label("customers"),
            func.sum(case((won_back, 1), else_=0)).label("won_back"),
            func.sum(case((_status_to((CHURNED,), start, end), 1), else_=0)).label("churned"),
            func.sum(value).label("value"),
            func.sum(case((allowed, 1), else_=0)).label("reached"),
            func.sum(case((and_(allowed, _orders(start, valid_end)), 1), else_=0)).label("redeemed"),
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
    money = stats.money(
        reached=reached,
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
        blocked=treated.customers - reached,
        blocked_by=dict(campaign.blocked_by),
        redeemed=redeemed,
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
