"""What a sequence's conditions read about a batch of enrolments' customers, at once (docs/sequences.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.types import as_utc
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports.models import ORDER, FactEvent
from services.retention.sequences import core as sq
from services.retention.sequences.models import Enrolment
from services.retention.signals.models import Signal
from services.retention.tasks.models import Task

REPLY_SIGNALS = ("survey.answered", "complaint.opened")  # the customer came back to us
# Signals that end a wait early (sequences.WAIT_EVENTS); "purchased" is an order in the read model.
WAIT_SIGNALS = {"complaint.opened": "complaint_opened", "survey.answered": "survey_answered"}


async def read_facts(session: AsyncSession, enrolments: Sequence[Enrolment]) -> dict[str, sq.Facts]:
    """What the conditions read, for a batch at once: churn risk (score replica), replies (signals),
    purchases (status changes), the latest task's outcome, and erasure."""
    ids = list({e.customer_id for e in enrolments})
    earliest = min(as_utc(e.started_at) for e in enrolments)
    risk = dict(
        (
            await session.execute(
                select(CustomerScore.customer_id, CustomerScore.churn_risk).where(
                    col(CustomerScore.customer_id).in_(ids)
                )
            )
        ).all()
    )
    replies: dict[str, list[datetime]] = {}
    signals: dict[str, list[tuple[str, datetime]]] = {}
    for customer_id, event_type, at in await session.execute(
        select(Signal.customer_id, Signal.event_type, Signal.at).where(
            col(Signal.customer_id).in_(ids), col(Signal.event_type).in_(REPLY_SIGNALS), col(Signal.at) >= earliest
        )
    ):
        replies.setdefault(customer_id, []).append(as_utc(at))
        if event_type in WAIT_SIGNALS:
            signals.setdefault(customer_id, []).append((WAIT_SIGNALS[event_type], as_utc(at)))
    # A purchase is an order (interaction.recorded of type purchase, kept by the read model), not a status.
    purchases: dict[str, list[datetime]] = {}
    for customer_id, at in await session.execute(
        select(FactEvent.customer_id, FactEvent.at).where(
            col(FactEvent.customer_id).in_(ids), col(FactEvent.kind) == ORDER, col(FactEvent.at) >= earliest
        )
    ):
        purchases.setdefault(customer_id, []).append(as_utc(at))
    task_ids = [e.last_task_id for e in enrolments if e.last_task_id]
    task_status = (
        dict((await session.execute(select(Task.id, Task.status).where(col(Task.id).in_(task_ids)))).all())
        if task_ids
        else {}
    )
    erased = set(
        (
            await session.execute(
                select(Customer.customer_id).where(
                    col(Customer.customer_id).in_(ids), col(Customer.erased_at).is_not(None)
                )
            )
        ).scalars()
    )
    facts = {}
    for e in enrolments:
        started = as_utc(e.started_at)
        since = as_utc(e.wait_began) if e.wait_began is not None else started
        arrived = {name for name, at in signals.get(e.customer_id, ()) if at >= since}
        if any(at >= since for at in purchases.get(e.customer_id, ())):
            arrived.add("purchased")
        facts[e.id] = sq.Facts(
            churn_risk=risk.get(e.customer_id),
            purchased=any(at >= started for at in purchases.get(e.customer_id, ())),
            replied=any(at >= since for at in replies.get(e.customer_id, ())),
            task=str(task_status[e.last_task_id]) if e.last_task_id in task_status else "none",
            erased=e.customer_id in erased,
            arrived=frozenset(arrived),
        )
    return facts
