"""Scheduled follow-ups per tier (docs/sequences.md#scheduled-follow-ups). Domain functions never commit.

A schedule says, for a value tier, how often each of its customers gets a follow-up and what it is: a
return visit, a call or an executive's outreach (a task for the account manager, due in `due_in_hours`)
or a satisfaction survey (a one-time survey link sent as a touch). Each eligible customer (an active or
won-back, not erased customer whose tier has a schedule) gets a `followup_due` row, the persisted timer,
due at once the first time. The consume role's loop claims due rows (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, and a conditional version bump everywhere, like sequences), passes each follow-up through
consent and the contact policy (a blocked one is recorded as a touch with its reason, never created),
creates the task or survey link with its events in the same transaction, and moves the timer on by
`every_days`. A customer whose tier no longer has a schedule leaves the schedule.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import VALUE_TIERS
from contracts.retention import TaskCreated
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.events.envelope import EventData
from servicekit.problems import Problem, field_error, not_found
from servicekit.sql import dialect_insert
from servicekit.unit_of_work import UnitOfWork
from services.retention.db import new_id
from services.retention.followups.models import FOLLOWUP_ACTIONS, FollowupDue, FollowupSchedule, ScheduleBody
from services.retention.publishing import publish
from services.retention.replica.models import Customer, CustomerScore
from services.retention.surveys import service as surveys
from services.retention.tasks.events import task_event
from services.retention.tasks.models import Task, TaskStatus
from services.retention.touches import service as touches

log = logging.getLogger("retention.followups")
REASON = "scheduled_followup"  # the reason on the follow-ups' tasks and touches
ELIGIBLE_STATUSES = ("active", "won_back")


# ---- schedules --------------------------------------------------------------------------------------------


def check_tier(tier: str) -> None:
    if tier not in VALUE_TIERS:
        raise Problem(
            422, "Unknown tier", code="validation", errors=[field_error("tier", "one of: " + ", ".join(VALUE_TIERS))]
        )


async def put_schedule(*, session: AsyncSession, tier: str, body: ScheduleBody) -> FollowupSchedule:
    check_tier(tier)
    if body.action not in FOLLOWUP_ACTIONS:
        allowed = ", ".join(a.value for a in FOLLOWUP_ACTIONS)
        raise Problem(422, "Not a follow-up", code="validation", errors=[field_error("action", f"one of: {allowed}")])
    row = await session.get(FollowupSchedule, tier, with_for_update=True)
    if row is None:
        row = FollowupSchedule(tier=tier, every_days=body.every_days, action=body.action.value)
        session.add(row)
    row.every_days, row.action, row.due_in_hours = body.every_days, body.action.value, body.due_in_hours
    row.survey = body.survey
    row.updated_at = utc_now()
    await session.flush()
    return row


async def list_schedules(*, session: AsyncSession) -> list[FollowupSchedule]:
    return list((await session.execute(select(FollowupSchedule).order_by(col(FollowupSchedule.tier)))).scalars())


async def delete_schedule(*, session: AsyncSession, tier: str) -> None:
    check_tier(tier)
    row = await session.get(FollowupSchedule, tier)
    if row is None:
        raise not_found("Follow-up schedule", tier, field="tier")
    await session.delete(row)
    await session.execute(delete(FollowupDue).where(col(FollowupDue.tier) == tier))


# ---- the loop ---------------------------------------------------------------------------------------------


def tier_column() -> Any:
    return func.coalesce(Customer.tier, CustomerScore.value_tier)


async def enrol_new(session: AsyncSession, *, schedules: dict[str, FollowupSchedule], now: datetime, limit: int) -> int:
    """Give eligible customers without a timer their first follow-up, due now; how many."""
    tier = tier_column()
    query = (
        select(Customer.customer_id, tier)
        .outerjoin(CustomerScore, col(CustomerScore.customer_id) == col(Customer.customer_id))
        .outerjoin(FollowupDue, col(FollowupDue.customer_id) == col(Customer.customer_id))
        .where(
            col(Customer.erased_at).is_(None),
            col(Customer.status).in_(ELIGIBLE_STATUSES),
            tier.in_(list(schedules)),
            col(FollowupDue.customer_id).is_(None),
        )
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    if rows:
        # Another replica may seed the same customers at the same moment: the first insert wins.
        table = FollowupDue.__table__  # type: ignore[attr-defined]
        values = [{"customer_id": c, "tier": t, "next_due_at": now, "version": 0} for c, t in rows]
        await session.execute(dialect_insert(session)(table).values(values).on_conflict_do_nothing())
    return len(rows)


async def claim(session: AsyncSession, *, now: datetime, limit: int) -> list[FollowupDue]:
    query = select(FollowupDue.customer_id).where(col(FollowupDue.next_due_at) <= now).limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list((await session.execute(query)).scalars())
    if not ids:
        return []
    won = list(
        (
            await session.execute(
                update(FollowupDue)
                .where(col(FollowupDue.customer_id).in_(ids), col(FollowupDue.next_due_at) <= now)
                .values(version=FollowupDue.version + 1)
                .returning(FollowupDue.customer_id)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    rows = select(FollowupDue).where(col(FollowupDue.customer_id).in_(won)).execution_options(populate_existing=True)
    return list((await session.execute(rows)).scalars())


async def run_batch(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Seed new timers, then run up to `limit` due follow-ups in the caller's transaction; how many ran."""
    schedules = {s.tier: s for s in await list_schedules(session=session)}
    if not schedules:
        return 0
    await enrol_new(session, schedules=schedules, now=now, limit=limit)
    due = await claim(session, now=now, limit=limit)
    if not due:
        return 0
    ids = [d.customer_id for d in due]
    tier = tier_column()
    current = {
        customer_id: (customer_tier, owner, status, erased_at)
        for customer_id, customer_tier, owner, status, erased_at in await session.execute(
            select(Customer.customer_id, tier, Customer.owner, Customer.status, Customer.erased_at)
            .outerjoin(CustomerScore, col(CustomerScore.customer_id) == col(Customer.customer_id))
            .where(col(Customer.customer_id).in_(ids))
        )
    }
    events: list[EventData] = []
    for timer in due:
        customer_tier, owner, status, erased_at = current.get(timer.customer_id, (None, None, None, None))
        schedule = schedules.get(customer_tier) if customer_tier else None
        if schedule is None or erased_at is not None or status not in ELIGIBLE_STATUSES:
            await session.delete(timer)  # left the schedule; a later return to it starts a new timer
            continue
        result, more = await follow_up(
            session,
            timer.customer_id,
            action=schedule.action,
            tier=schedule.tier,
            due_in_hours=schedule.due_in_hours,
            survey=schedule.survey,
            reason=REASON,
            owner=owner,
            now=now,
        )
        events.extend(more)
        timer.tier = schedule.tier
        timer.last_result = result
        timer.next_due_at = now + timedelta(days=schedule.every_days)
    if events:
        await publish(UnitOfWork(session), *events)
    await session.flush()
    return len(due)


async def follow_up(
    session: AsyncSession,
    customer_id: str,
    *,
    action: str,
    tier: str,
    due_in_hours: float,
    reason: str,
    owner: str | None,
    now: datetime,
    survey: str | None = None,
) -> tuple[str, list[EventData]]:
    """One follow-up through consent and the contact policy: ('created' | 'sent' | 'blocked', its events)."""
    is_survey = action in surveys.SURVEY_ACTIONS
    due = now if is_survey else now + timedelta(hours=due_in_hours)
    row: dict[str, Any] = {
        "id": new_id(),
        "alert_id": None,
        "customer_id": customer_id,
        "reason": reason,
        "action": action,
        "due_at": due,
        "survey": survey,
    }
    allowed, events = await touches.screen(session, [row], tier=tier)
    if not allowed:
        return "blocked", []
    if is_survey:
        return "sent", list(events)  # the survey link (survey.requested) is the follow-up
    task = Task(
        id=row["id"],
        alert_id=None,
        customer_id=customer_id,
        reason=reason,
        action=action,
        owner=owner,
        status=TaskStatus.open,
        due_at=due,
        created_at=now,
    )
    session.add(task)
    return "created", [task_event(TaskCreated, task), *events]


async def run_due(database: Database, *, batch_size: int, now: datetime | None = None) -> int:
    total = 0
    while True:
        async with database.transaction() as session:
            ran = await run_batch(session, now=now or utc_now(), limit=batch_size)
        total += ran
        if ran < batch_size:
            return total
