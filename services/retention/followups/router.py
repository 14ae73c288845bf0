"""Follow-up routes: one schedule per value tier, the follow-ups after events, and a customer's pending ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from contracts.customer import VALUE_TIERS
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.retention.followups import listing, service, triggers
from services.retention.followups.models import (
    PendingFollowupsPublic,
    ScheduleBody,
    SchedulePublic,
    SchedulesPublic,
    Trigger,
    TriggerBody,
    TriggerPublic,
    TriggersPublic,
)

# One of the four value tiers (an enum in the API); the service answers 422 naming tier for any other.
TierPath = Annotated[str, Path(description="value tier", json_schema_extra={"enum": list(VALUE_TIERS)})]

router = APIRouter(prefix="/followup-schedules", tags=["followups"])


@router.get("", response_model=SchedulesPublic)
async def list_schedules(session: SessionDep) -> SchedulesPublic:
    """The follow-up schedules, one per tier at most (four tiers: never more than one page)."""
    items = await service.list_schedules(session=session)
    return SchedulesPublic(
        items=[SchedulePublic.model_validate(s) for s in items], total=len(items), limit=len(items), offset=0
    )


@router.put("/{tier}", response_model=SchedulePublic)
async def put_schedule(tier: TierPath, body: ScheduleBody, session: SessionDep) -> SchedulePublic:
    """Set the tier's schedule: every customer of the tier gets `action` every `every_days`, the first at once."""
    row = await service.put_schedule(session=session, tier=tier, body=body)
    public = SchedulePublic.model_validate(row)
    await session.commit()
    return public


@router.delete("/{tier}", status_code=204)
async def delete_schedule(tier: TierPath, session: SessionDep) -> Response:
    """End the tier's schedule: no further follow-ups (tasks already created stay)."""
    await service.delete_schedule(session=session, tier=tier)
    await session.commit()
    return Response(status_code=204)


triggers_router = APIRouter(prefix="/followup-triggers", tags=["followups"])


@triggers_router.get("", response_model=TriggersPublic)
async def list_triggers(session: SessionDep) -> TriggersPublic:
    """The follow-ups after events, per tier and trigger (four tiers, two triggers: never more than one page)."""
    items = await triggers.list_triggers(session=session)
    return TriggersPublic(
        items=[TriggerPublic.model_validate(t) for t in items], total=len(items), limit=len(items), offset=0
    )


@triggers_router.put("/{tier}/{trigger}", response_model=TriggerPublic)
async def put_trigger(tier: TierPath, trigger: Trigger, body: TriggerBody, session: SessionDep) -> TriggerPublic:
    """After each such event (a complaint resolved, a win-back), every customer of the tier gets `action`,
    due `delay_hours` later, through consent and the contact policy; once per event."""
    row = await triggers.put_trigger(session=session, tier=tier, trigger=trigger, body=body)
    public = TriggerPublic.model_validate(row)
    await session.commit()
    return public


@triggers_router.delete("/{tier}/{trigger}", status_code=204)
async def delete_trigger(tier: TierPath, trigger: Trigger, session: SessionDep) -> Response:
    """No follow-up after later such events for the tier (those already pending still fire)."""
    await triggers.delete_trigger(session=session, tier=tier, trigger=trigger)
    await session.commit()
    return Response(status_code=204)


customer_router = APIRouter(tags=["followups"])


@customer_router.get("/customers/{customer_id}/followups", response_model=PendingFollowupsPublic)
async def customer_followups(
    customer_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> PendingFollowupsPublic:
    """The customer's follow-ups still to come, soonest first: the next one of the tier's schedule
    (`scheduled`) and each one pending after a resolved complaint or a win-back (`after_event`). Each still
    passes consent and the contact policy when it falls due. A customer with none has an empty page."""
    items = await listing.pending_for(session=session, customer_id=customer_id)
    return PendingFollowupsPublic(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset)
