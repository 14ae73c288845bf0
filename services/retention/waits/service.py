"""Registering and waking waits that end early. Domain functions only: they never commit.

The engine (sequence_engine.py) registers an enrolment when it parks at a wait with `until` and removes
the registration when the enrolment moves on; an arriving event (an order, a complaint, a survey answer)
sets the due time of that customer's registered enrolments to now, so the engine's next round runs them,
reads the event among its facts and ends the wait (sequences.advance).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.sql import dialect_insert
from services.retention.sequences.models import Enrolment, EnrolmentStatus
from services.retention.waits.models import EnrolmentWake


def _encoded(events: Sequence[str]) -> str:
    return "," + ",".join(sorted(set(events))) + ","


async def register(session: AsyncSession, *, enrolment_id: str, customer_id: str, events: Sequence[str]) -> None:
    table = EnrolmentWake.__table__  # type: ignore[attr-defined]
    row = {"enrolment_id": enrolment_id, "customer_id": customer_id, "events": _encoded(events)}
    query = dialect_insert(session)(table).values(row)
    query = query.on_conflict_do_update(index_elements=[table.c.enrolment_id], set_={"events": row["events"]})
    await session.execute(query)


async def clear(session: AsyncSession, enrolment_ids: Sequence[str]) -> None:
    if enrolment_ids:
        await session.execute(delete(EnrolmentWake).where(col(EnrolmentWake.enrolment_id).in_(list(enrolment_ids))))


async def wake(session: AsyncSession, *, customer_id: str, event: str, now: datetime) -> int:
    """Make the customer's enrolments waiting for `event` due now; how many."""
    waiting = select(EnrolmentWake.enrolment_id).where(
        col(EnrolmentWake.customer_id) == customer_id, col(EnrolmentWake.events).contains(f",{event},")
    )
    result = await session.execute(
        update(Enrolment)
        .where(
            col(Enrolment.id).in_(waiting),
            col(Enrolment.status) == EnrolmentStatus.active.value,
            col(Enrolment.due_at) > now,
        )
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
