"""A customer's follow-ups still to come: the next one of the tier's schedule and those pending after an event
(docs/sequences.md#a-customers-follow-ups). Reads only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.retention.followups.models import (
    FollowupDue,
    FollowupKind,
    FollowupPending,
    FollowupSchedule,
    PendingFollowupPublic,
    Trigger,
)
from services.retention.followups.triggers import PENDING


async def pending_for(*, session: AsyncSession, customer_id: str) -> list[PendingFollowupPublic]:
    """Soonest first. A customer with none (or unknown, or erased: erasure removes the rows) has none."""
    items: list[PendingFollowupPublic] = []
    scheduled = await session.execute(
        select(FollowupDue, FollowupSchedule)
        .join(FollowupSchedule, col(FollowupSchedule.tier) == col(FollowupDue.tier))
        .where(col(FollowupDue.customer_id) == customer_id)
    )
    for due, schedule in scheduled:
        items.append(
            PendingFollowupPublic(
                kind=FollowupKind.scheduled,
                action=schedule.action,
                tier=due.tier,
                due_at=due.next_due_at,
                every_days=schedule.every_days,
                last_result=due.last_result,
            )
        )
    pending = await session.execute(
        select(FollowupPending).where(
            col(FollowupPending.customer_id) == customer_id, col(FollowupPending.status) == PENDING
        )
    )
    for row in pending.scalars():
        items.append(
            PendingFollowupPublic(
                kind=FollowupKind.after_event,
                action=row.action,
                tier=row.tier,
                due_at=row.due_at,
                trigger=Trigger(row.trigger),
                key=row.key,
            )
        )
    items.sort(key=lambda item: (item.due_at, item.kind.value, item.key or ""))
    return items
