"""Follow-ups triggered by an event (docs/sequences.md#follow-ups-after-an-event). Domain functions never commit.

Per value tier, a follow-up after a resolved complaint (complaint.updated to resolved) and after a win-back
(customer.status_changed from churned back to won_back or active): a return visit, a call, an executive's
outreach (tasks for the account manager) or a satisfaction survey link (a touch), due `delay_hours` after
the event. The consumer writes one `followup_pending` row per triggering event, keyed by the event (the
complaint, the status change), in its own transaction, so a redelivered or repeated event adds nothing.
The follow-up loop claims due rows like the scheduled ones (`FOR UPDATE SKIP LOCKED` and a conditional
version bump), passes each through consent and the contact policy (a blocked one is recorded as a touch
with its reason) and keeps the row with its result. Erasure removes the customer's rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.events.envelope import EventData
from servicekit.problems import Problem, field_error, not_found
from servicekit.sql import dialect_insert
from servicekit.unit_of_work import UnitOfWork
from services.retention.followups.models import (
    FOLLOWUP_ACTIONS,
    FollowupDue,
    FollowupPending,
    FollowupTrigger,
    Trigger,
    TriggerBody,
)
from services.retention.followups.service import check_tier, follow_up, tier_column
from services.retention.publishing import publish
from services.retention.replica.models import Customer, CustomerScore

PENDING = "pending"
BACK_FROM = "churned"
BACK_TO = ("won_back", "active")


def reason_of(trigger: str) -> str:
    """The reason on the follow-up's task and touch: after_complaint_resolved, after_won_back."""
    return f"after_{trigger}"


# ---- configuration ----------------------------------------------------------------------------------------


async def put_trigger(*, session: AsyncSession, tier: str, trigger: Trigger, body: TriggerBody) -> FollowupTrigger:
    check_tier(tier)
    if body.action not in FOLLOWUP_ACTIONS:
        allowed = ", ".join(a.value for a in FOLLOWUP_ACTIONS)
        raise Problem(422, "Not a follow-up", code="validation", errors=[field_error("action", f"one of: {allowed}")])
    row = await session.get(FollowupTrigger, (tier, trigger.value), with_for_update=True)
    if row is None:
        row = FollowupTrigger(tier=tier, trigger=trigger.value, action=body.action.value)
        session.add(row)
    row.action, row.delay_hours, row.due_in_hours = body.action.value, body.delay_hours, body.due_in_hours
    row.survey = body.survey
    row.updated_at = utc_now()
    await session.flush()
    return row


async def list_triggers(*, session: AsyncSession) -> list[FollowupTrigger]:
    query = select(FollowupTrigger).order_by(col(FollowupTrigger.tier), col(FollowupTrigger.trigger))
    return list((await session.execute(query)).scalars())


async def delete_trigger(*, session: AsyncSession, tier: str, trigger: Trigger) -> None:
    """No further follow-ups after this event for the tier; those already pending still fire."""
    check_tier(tier)
    row = await session.get(FollowupTrigger, (tier, trigger.value))
    if row is None:
        raise not_found("Follow-up trigger", f"{tier}/{trigger.value}", field="trigger")
    await session.delete(row)


# ---- the consumer's side ------------------------------------------------------------------------------------


async def triggered(
    session: AsyncSession,
    *,
    customer_id: str,
    trigger: Trigger,
    key: str,
    now: datetime,
    current_status: str | None = None,
) -> FollowupPending | None:
    """The customer's tier has a follow-up after this event: pend it, once per event key. None otherwise,
    and None when `current_status` is given and the customer's status is no longer it (an older change
    arriving late)."""
    query = select(FollowupTrigger).where(col(FollowupTrigger.trigger) == trigger.value)
    by_tier = {row.tier: row for row in (await session.execute(query)).scalars()}
    if not by_tier:
        return None
    found = (
        await session.execute(
            select(tier_column(), Customer.erased_at, Customer.status)
            .select_from(Customer)
            .outerjoin(CustomerScore, col(CustomerScore.customer_id) == col(Customer.customer_id))
            .where(col(Customer.customer_id) == customer_id)
        )
    ).first()
    if found is None or found[1] is not None or found[0] not in by_tier:
        return None
    if current_status is not None and found[2] != current_status:
        return None
    rule = by_tier[found[0]]
    table = FollowupPending.__table__  # type: ignore[attr-defined]
    row = {
        "key": f"{trigger.value}:{key}"[:200],
        "customer_id": customer_id,
        "trigger": trigger.value,
        "tier": rule.tier,
        "action": rule.action,
        "due_in_hours": rule.due_in_hours,
        "survey": rule.survey,
        "due_at": now + timedelta(hours=rule.delay_hours),
        "status": PENDING,
        "version": 0,
        "created_at": now,
    }
    await session.execute(dialect_insert(session)(table).values(row).on_conflict_do_nothing())
    return await session.get(FollowupPending, row["key"])


def won_back(previous_status: str | None, status: str) -> bool:
    return previous_status == BACK_FROM and status in BACK_TO


async def erase(session: AsyncSession, *, customer_id: str) -> None:
    """The customer's follow-ups, pending after events and scheduled (the timer, not waiting for it to fall due)."""
    await session.execute(delete(FollowupPending).where(col(FollowupPending.customer_id) == customer_id))
    await session.execute(delete(FollowupDue).where(col(FollowupDue.customer_id) == customer_id))


# ---- the loop's side ----------------------------------------------------------------------------------------


async def claim(session: AsyncSession, *, now: datetime, limit: int) -> list[FollowupPending]:
    due = (col(FollowupPending.status) == PENDING, col(FollowupPending.due_at) <= now)
    query = select(FollowupPending.key).where(*due).order_by(col(FollowupPending.due_at)).limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    keys = list((await session.execute(query)).scalars())
    if not keys:
        return []
    won = list(
        (
            await session.execute(
                update(FollowupPending)
                .where(col(FollowupPending.key).in_(keys), *due)
                .values(version=FollowupPending.version + 1)
                .returning(FollowupPending.key)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    rows = select(FollowupPending).where(col(FollowupPending.key).in_(won)).execution_options(populate_existing=True)
    return list((await session.execute(rows)).scalars())


async def run_batch(session: AsyncSession, *, now: datetime, limit: int) -> tuple[int, list[EventData]]:
    """Run up to `limit` due event-triggered follow-ups in the caller's transaction: (how many, events)."""
    due = await claim(session, now=now, limit=limit)
    if not due:
        return 0, []
    ids = list({p.customer_id for p in due})
    current = {
        customer_id: (owner, erased_at)
        for customer_id, owner, erased_at in await session.execute(
            select(Customer.customer_id, Customer.owner, Customer.erased_at).where(col(Customer.customer_id).in_(ids))
        )
    }
    events: list[EventData] = []
    for pending in due:
        owner, erased_at = current.get(pending.customer_id, (None, None))
        if erased_at is not None:
            pending.status = "dropped"
        else:
            result, more = await follow_up(
                session,
                pending.customer_id,
                action=pending.action,
                tier=pending.tier,
                due_in_hours=pending.due_in_hours,
                survey=pending.survey,
                reason=reason_of(pending.trigger),
                owner=owner,
                now=now,
            )
            events.extend(more)
            pending.status = result
        pending.fired_at = now
    return len(due), events


async def run_due(database: Database, *, batch_size: int, now: datetime | None = None) -> int:
    """Every due event-triggered follow-up, a batch per transaction; how many ran."""
    total = 0
    while True:
        async with database.transaction() as session:
            ran, events = await run_batch(session, now=now or utc_now(), limit=batch_size)
            if events:
                await publish(UnitOfWork(session), *events)
            await session.flush()
        total += ran
        if ran < batch_size:
            return total
