"""Complaints: reading them, moving them through their workflow, flagging those past their SLA.
They change state and enqueue events, and never commit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, not_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from contracts.common import InteractionType, Severity
from contracts.interaction import ComplaintOverdue, ComplaintUpdated
from servicekit.clock import utc_now
from servicekit.outbox import enqueue, enqueue_many
from servicekit.pagination import MAX_PAGE
from servicekit.problems import Problem, field_error, not_found
from servicekit.tables import table_of
from servicekit.types import as_utc
from services.interaction.complaints import sla, workflow
from services.interaction.complaints.models import ComplaintStep, ComplaintTransition
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.interactions.models import Interaction
from services.interaction.replica.models import KnownCustomer

log = logging.getLogger("interaction.service")


async def get_complaint(*, session: AsyncSession, complaint_id: str, for_update: bool = False) -> Interaction:
    query = select(Interaction).where(
        col(Interaction.id) == complaint_id, col(Interaction.type) == InteractionType.complaint.value
    )
    if for_update:
        # Two clerks moving the same complaint at once: the second waits, then sees the new status.
        query = query.with_for_update()
    complaint = (await session.execute(query)).scalar_one_or_none()
    if complaint is None:
        raise not_found("complaint", complaint_id, detail=f"No complaint with id {complaint_id}.")
    return complaint


async def complaint_steps(*, session: AsyncSession, complaint_id: str) -> list[ComplaintStep]:
    result = await session.execute(
        select(ComplaintStep).where(col(ComplaintStep.complaint_id) == complaint_id).order_by(col(ComplaintStep.id))
    )
    return list(result.scalars())


async def transition_complaint(
    *, session: AsyncSession, complaint_id: str, change: ComplaintTransition, now: datetime | None = None
) -> Interaction:
    """Move a complaint one step through its workflow and enqueue complaint.updated."""
    now = now or utc_now()
    complaint = await get_complaint(session=session, complaint_id=complaint_id, for_update=True)
    current = ComplaintStatus(complaint.complaint_status or ComplaintStatus.open)
    try:
        workflow.check_transition(current, change.to, change.resolution)
    except workflow.TransitionRefused as refused:
        raise Problem(
            refused.status,
            "Transition not allowed" if refused.status == 409 else "Invalid request",
            f"Cannot move complaint {complaint_id} from {current.value} to {change.to.value}: {refused.reason}.",
            code="invalid_transition" if refused.status == 409 else "validation",
            errors=[field_error(refused.field, refused.reason)],
            current_status=current.value,
            allowed=sorted(s.value for s in workflow.allowed_next(current)),
        ) from None
    complaint.complaint_status = change.to
    complaint.complaint_updated_at = now
    if change.to == ComplaintStatus.resolved:
        assert change.resolution is not None  # check_transition requires it
        complaint.resolution = change.resolution.strip()
    session.add(
        ComplaintStep(complaint_id=complaint.id, previous_status=current, status=change.to, note=change.note, at=now)
    )
    await session.flush()
    assert complaint.severity is not None
    await enqueue(
        session,
        ComplaintUpdated(
            customer_id=complaint.customer_id,
            complaint_id=complaint.id,
            previous_status=current.value,
            status=change.to.value,
            severity=complaint.severity,
            changed_at=now,
            category=complaint.category,
            due_at=complaint.due_at,
        ),
    )
    return complaint


async def list_complaints(
    *,
    session: AsyncSession,
    statuses: Sequence[ComplaintStatus] = (),
    severities: Sequence[Severity] = (),
    categories: Sequence[str] = (),
    customer_id: str | None = None,
    owners: Sequence[str] = (),
    overdue: bool | None = None,
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[tuple[Interaction, str | None]], int]:
    """Complaints matching every filter, the most urgent (earliest due) first, each with its customer's owner
    (from the replica); a page and the total. ``owners``: only complaints of customers one of them owns."""
    now = now or utc_now()
    conditions: list[ColumnElement[bool]] = [col(Interaction.type) == InteractionType.complaint.value]
    if statuses:
        conditions.append(col(Interaction.complaint_status).in_([s.value for s in statuses]))
    if severities:
        conditions.append(col(Interaction.severity).in_([s.value for s in severities]))
    if categories:
        conditions.append(col(Interaction.category).in_(list(categories)))
    if customer_id is not None:
        conditions.append(col(Interaction.customer_id) == customer_id)
    if overdue is not None:
        # The same rule as sla.is_overdue: past due while the SLA still runs (flagged or not yet).
        late = and_(
            col(Interaction.complaint_status).in_([s.value for s in sla.SLA_RUNNING]),
            col(Interaction.due_at) < now,
        )
        conditions.append(late if overdue else not_(late))
    joined = table_of(Interaction).outerjoin(
        table_of(KnownCustomer), col(KnownCustomer.customer_id) == col(Interaction.customer_id)
    )
    if owners:
        conditions.append(col(KnownCustomer.owner).in_(list(owners)))
    total = (await session.execute(select(func.count()).select_from(joined).where(*conditions))).scalar_one()
    page = await session.execute(
        select(Interaction, col(KnownCustomer.owner))
        .select_from(joined)
        .where(*conditions)
        .order_by(col(Interaction.due_at).asc(), col(Interaction.id).asc())
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return [(row[0], row[1]) for row in page.all()], total


async def flag_overdue_complaints(*, session: AsyncSession, now: datetime, limit: int = 500) -> list[str]:
    """Flag complaints that just went past their SLA and enqueue complaint.overdue once for each.

    One UPDATE … RETURNING flags a page of them, however many (an import can bring thousands of complaints
    still open from years ago): the flag and the events commit together with the caller's transaction. The
    update's own condition (overdue_at IS NULL) makes a second watcher, in this process or another, find
    the rows already flagged and emit nothing; on PostgreSQL it also skips the rows another watcher holds
    instead of waiting for them. Returns the ids flagged now, earliest due first.
    """
    running = [s.value for s in sla.SLA_RUNNING]
    page = (
        select(Interaction.id)
        .where(
            col(Interaction.complaint_status).in_(running),
            col(Interaction.due_at) < now,
            col(Interaction.overdue_at).is_(None),
        )
        .order_by(col(Interaction.due_at))
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite writes one transaction at a time
    )
    claimed = await session.execute(
        update(Interaction)
        .where(
            col(Interaction.id).in_(page.scalar_subquery()),
            col(Interaction.overdue_at).is_(None),
            col(Interaction.complaint_status).in_(running),
        )
        .values(overdue_at=now)
        .returning(
            col(Interaction.id),
            col(Interaction.customer_id),
            col(Interaction.severity),
            col(Interaction.complaint_status),
            col(Interaction.due_at),
            col(Interaction.category),
        )
        .execution_options(synchronize_session=False)
    )
    rows = sorted(claimed.all(), key=lambda row: (as_utc(row.due_at), row.id))
    if not rows:
        return []
    await enqueue_many(
        session,
        [
            ComplaintOverdue(
                customer_id=row.customer_id,
                complaint_id=row.id,
                severity=row.severity,
                status=str(row.complaint_status),
                due_at=row.due_at,
                category=row.category,
                detected_at=now,
            )
            for row in rows
        ],
    )
    log.info("complaints overdue", extra={"count": len(rows)})
    return [row.id for row in rows]
