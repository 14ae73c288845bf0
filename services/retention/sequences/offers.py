"""A campaign's touch step: the campaign's offer to one member, through consent and the contact policy.

A campaign run as a sequence (docs/campaigns.md#a-campaign-as-a-sequence) enrols each treated member with
the campaign's offer copied into the enrolment's `context`. Each of its touch steps (the offer, a reminder)
is recorded as a touch with the campaign's reason over the campaign's channel, allowed or blocked with
the verdict; an allowed one leaves as `campaign.touch_requested` with the offer's code and the step's id.
The member's row follows: reached (`allowed`) once any touch went out, else the latest block reason, and
the number of touches sent (the report's cost counts each one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.retention import CampaignTouchRequested
from servicekit.events.envelope import EventData
from services.retention.campaigns.models import CampaignMember
from services.retention.db import new_id
from services.retention.member_tiers import service as member_tiers
from services.retention.sequences import core as sq
from services.retention.sequences.models import Enrolment, EnrolmentStatus
from services.retention.touches import contact_policy as cp
from services.retention.touches import service as touches

ALLOWED = cp.Verdict.allowed.value


def offer_context(
    *,
    campaign_id: str,
    offer_id: str,
    offer_code: str,
    offer_kind: str,
    offer_value: float | None,
    channel: str,
    template: str,
    valid_until: datetime,
) -> dict[str, Any]:
    """What an enrolment keeps to send the campaign's offer (ids, codes and numbers only)."""
    return {
        "campaign_id": campaign_id,
        "offer_id": offer_id,
        "offer_code": offer_code,
        "offer_kind": offer_kind,
        "offer_value": offer_value,
        "channel": channel,
        "template": template,
        "valid_until": valid_until.isoformat(),
    }


async def carry_out(
    session: AsyncSession, enrolment: Enrolment, step: sq.TouchStep, *, now: datetime
) -> tuple[str, list[EventData]]:
    """('sent' | 'blocked', the events to publish) for one offer touch of a campaign's enrolment."""
    context = enrolment.context or {}
    row: dict[str, Any] = {
        "id": new_id(),
        "alert_id": None,
        "customer_id": enrolment.customer_id,
        "reason": enrolment.reason,
        "action": step.action,
        "channel": context["channel"],
        "due_at": now,
    }
    verdicts: dict[str, str] = {}
    allowed, _ = await touches.screen(session, [row], tier=enrolment.tier, verdicts=verdicts)
    verdict = verdicts[row["id"]]
    await _member(session, context["campaign_id"], enrolment.customer_id, verdict, row["id"])
    if not allowed:
        return "blocked", []
    member_tier, benefits = (await member_tiers.benefits_of(session, [enrolment.customer_id])).get(
        enrolment.customer_id, (None, [])
    )
    event = CampaignTouchRequested(
        touch_id=row["id"],
        campaign_id=context["campaign_id"],
        customer_id=enrolment.customer_id,
        offer_id=context["offer_id"],
        offer_code=context["offer_code"],
        offer_kind=context["offer_kind"],
        offer_value=context["offer_value"],
        channel=context["channel"],
        template=step.template or context["template"],
        valid_until=datetime.fromisoformat(context["valid_until"]),
        at=now,
        step_id=step.id,
        member_tier=member_tier,
        member_benefits=benefits,
    )
    return "sent", [event]


async def _member(session: AsyncSession, campaign_id: str, customer_id: str, verdict: str, touch_id: str) -> None:
    """Reached once any touch went out (its first touch id kept), else the latest block reason."""
    if verdict == ALLOWED:
        values: dict[str, Any] = {
            "verdict": ALLOWED,
            "touch_id": func.coalesce(CampaignMember.touch_id, touch_id),
            "touches": CampaignMember.touches + 1,
        }
    else:
        values = {"verdict": case((col(CampaignMember.verdict) == ALLOWED, ALLOWED), else_=verdict)}
    await session.execute(
        update(CampaignMember)
        .where(col(CampaignMember.campaign_id) == campaign_id, col(CampaignMember.customer_id) == customer_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def enrol_members(
    session: AsyncSession,
    *,
    reason: str,
    definition: dict[str, Any],
    members: list[tuple[str, str | None, str | None]],
    context: dict[str, Any],
    now: datetime,
) -> int:
    """Enrol one chunk of a launching campaign's treated members (customer id, tier, owner), first step due
    now; `definition` is the sequence as stored (the caller dumps it once for every chunk). The campaign is
    launched once (its row is locked), so no member is enrolled twice."""
    table = Enrolment.__table__  # type: ignore[attr-defined]
    rows = [
        {
            "id": new_id(),
            "customer_id": customer_id,
            "alert_id": None,
            "reason": reason,
            "tier": tier,
            "owner": owner,
            "definition": definition,
            "context": context,
            "status": EnrolmentStatus.active.value,
            "stop_reason": None,
            "cursor": 0,
            "waiting_since": None,
            "wait_began": None,
            "last_task_id": None,
            "due_at": now,
            "version": 0,
            "steps_run": 0,
            "trail": [],
            "active_slot": f"{customer_id}:{reason}",
            "started_at": now,
            "finished_at": None,
            "updated_at": now,
        }
        for customer_id, tier, owner in members
    ]
    if rows:
        await session.execute(insert(table), rows)
    return len(rows)
