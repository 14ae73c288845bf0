"""A win-back campaign's launch, by a route or the due-campaign loop. Never commits (the route or the loop
does). docs/campaigns.md.

The audience is read from the scoring service's segment (audience.py) before the launch's
transaction; in it the campaign row is locked and, only if still scheduled, every customer is drawn into
the treated group or the holdout (stats.assign_group), each treated customer's touch is checked against
consent and the contact policy and recorded as a touch (allowed, or blocked with the reason), and the
allowed touches leave as campaign.touch_requested events and signed webhooks, with campaign.launched, all
in that one transaction. A second launch (a retry, another replica's loop) finds the campaign launched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.retention import CampaignLaunched, CampaignTouchRequested
from servicekit import runtime_settings
from servicekit.background import every
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.events.envelope import EventData
from servicekit.problems import Problem, field_error
from servicekit.sql import chunks
from servicekit.tables import table_of
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.campaigns import service, stats
from services.retention.campaigns.audience import AudienceMember, SegmentClient
from services.retention.campaigns.churn import ChurnFilter
from services.retention.campaigns.models import (
    Campaign,
    CampaignMember,
    CampaignStatus,
    Offer,
)
from services.retention.campaigns.service import (
    CAMPAIGN_ACTION,
    get_campaign,
    get_offer,
    reason_of,
)
from services.retention.db import new_id
from services.retention.member_tiers import service as member_tiers
from services.retention.publishing import publish
from services.retention.sequences import core as sq
from services.retention.sequences import offers
from services.retention.settings import RetentionSettings
from services.retention.touches import contact_policy as cp
from services.retention.touches import service as touches
from services.retention.touches.models import ConsentReplica, Touch

log = logging.getLogger("retention.campaigns")


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


# Treated customers are written and announced this many at a time, so a large audience's touches, events and
# outbox rows never sit in memory all at once.
CHUNK = 1000


async def apply_launch(
    session: AsyncSession, campaign: Campaign, offer: Offer, audience: Sequence[AudienceMember], *, now: datetime
) -> None:
    """Members, touches and events of a locked, scheduled campaign, in the caller's transaction."""
    wanted = {m.customer_id: m for m in audience}
    if campaign.member_tiers:
        member_tier = await member_tiers.tiers_of(session, list(wanted))
        wanted = {c: m for c, m in wanted.items() if member_tier[c] in campaign.member_tiers}
    if campaign.churn:
        keep = await service.churn_matching(session, list(wanted), ChurnFilter.model_validate(campaign.churn), now)
        wanted = {c: m for c, m in wanted.items() if c in keep}
    erased, tiers, owners = await service.replica_facts(session, list(wanted))
    holdout_ids: list[str] = []
    treated_ids: list[str] = []
    for customer_id in sorted(wanted):
        if customer_id in erased:
            continue
        arm = stats.assign_group(campaign.id, customer_id, campaign.holdout_share)
        (treated_ids if arm == stats.TREATED else holdout_ids).append(customer_id)
    for start in range(0, len(holdout_ids), CHUNK):
        chunk = holdout_ids[start : start + CHUNK]
        await _insert(session, CampaignMember, [_member(campaign.id, c, stats.HOLDOUT, None, None, now) for c in chunk])
    size = len(holdout_ids) + len(treated_ids)
    if campaign.sequence is not None:
        await _enrol(session, campaign, offer, treated_ids, size, tiers=tiers, owners=owners, wanted=wanted, now=now)
        return
    verdicts = await _screen(session, treated_ids, channel=campaign.channel, tiers=tiers, wanted=wanted, now=now)
    valid_until = now + timedelta(days=offer.valid_days)
    blocked_by: dict[str, int] = {}
    uow = UnitOfWork(session)
    for start in range(0, len(treated_ids), CHUNK):
        touch_rows: list[dict[str, Any]] = []
        members: list[dict[str, Any]] = []
        events: list[EventData] = []
        chunk = treated_ids[start : start + CHUNK]
        benefits = await member_tiers.benefits_of(session, chunk)
        for customer_id in chunk:
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
                        member_tier=benefits.get(customer_id, (None, []))[0],
                        member_benefits=benefits.get(customer_id, (None, []))[1],
                    )
                )
            else:
                blocked_by[verdict.value] = blocked_by.get(verdict.value, 0) + 1
        await _insert(session, Touch, touch_rows)
        await _insert(session, CampaignMember, members)
        if events:
            await publish(uow, *events)  # outbox and webhook deliveries, in this transaction
        await session.flush()
    _launched(campaign, size, treated=len(treated_ids), blocked_by=blocked_by, now=now)
    await publish(uow, events_of_launch(campaign, offer, now))
    await session.flush()
    extra = {"campaign_id": campaign.id, "audience": campaign.audience, "blocked": sum(blocked_by.values())}
    log.info("campaign launched", extra=extra)


async def _insert(session: AsyncSession, model: type, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        await session.execute(insert(table_of(model)), rows[start : start + CHUNK])


async def _enrol(
    session: AsyncSession,
    campaign: Campaign,
    offer: Offer,
    treated_ids: list[str],
    size: int,
    *,
    tiers: dict[str, str],
    owners: dict[str, str],
    wanted: dict[str, AudienceMember],
    now: datetime,
) -> None:
    """A sequence campaign: every treated member runs the campaign's sequence (the engine's next round runs
    the first step, so each touch passes the contact policy when it is sent); the verdicts follow."""
    definition = sq.SequenceDef.model_validate(campaign.sequence)
    context = offers.offer_context(
        campaign_id=campaign.id,
        offer_id=offer.id,
        offer_code=offer.code,
        offer_kind=offer.kind,
        offer_value=offer.value,
        channel=campaign.channel,
        template=campaign.template,
        valid_until=now + timedelta(days=offer.valid_days),
    )
    copied = definition.model_dump(mode="json", by_alias=True)  # one copy, shared by every run's row
    for start in range(0, len(treated_ids), CHUNK):
        chunk = treated_ids[start : start + CHUNK]
        runs = [(c, tiers.get(c) or wanted[c].value_tier, owners.get(c)) for c in chunk]
        await offers.enrol_members(
            session, reason=reason_of(campaign.id), definition=copied, members=runs, context=context, now=now
        )
        await _insert(session, CampaignMember, [_member(campaign.id, c, stats.TREATED, None, None, now) for c in chunk])
    _launched(campaign, size, treated=len(treated_ids), blocked_by={}, now=now)
    await publish(UnitOfWork(session), events_of_launch(campaign, offer, now))
    await session.flush()
    extra = {"campaign_id": campaign.id, "audience": campaign.audience, "enrolled": len(treated_ids)}
    log.info("campaign launched", extra=extra)


def _launched(
    campaign: Campaign,
    size: int,
    *,
    treated: int,
    blocked_by: dict[str, int],
    now: datetime,
) -> None:
    campaign.audience = size
    campaign.treated = treated
    campaign.holdout = size - treated
    campaign.blocked = sum(blocked_by.values())
    # a sequence campaign's touches run later: its live counts are in the report
    campaign.reached = treated - campaign.blocked if campaign.sequence is None else 0
    campaign.blocked_by = blocked_by
    campaign.status = CampaignStatus.launched.value
    campaign.launched_at = now
    campaign.version += 1
    campaign.updated_at = now


def events_of_launch(campaign: Campaign, offer: Offer, now: datetime) -> CampaignLaunched:
    return CampaignLaunched(
        campaign_id=campaign.id,
        offer_id=offer.id,
        segment_id=campaign.segment_id,
        channel=campaign.channel,
        audience=campaign.audience,
        treated=campaign.treated,
        holdout=campaign.holdout,
        reached=campaign.reached,
        blocked=campaign.blocked,
        blocked_by=dict(campaign.blocked_by),
        at=now,
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
        "touches": 1 if verdict == cp.Verdict.allowed.value else 0,
        "enrolled_at": now,
    }


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
    rules = await touches.policy(session)
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
        client = service.segment_client(settings)
        try:
            async with database.transaction() as session:
                segment_id = (await get_campaign(session=session, campaign_id=campaign_id)).segment_id
                max_audience = (await runtime_settings.current(session, settings)).campaign_max_audience
            audience = await client.members(segment_id, limit=max_audience)
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
