"""Status changes along the customer lifecycle, and the status history; never commit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.common import CustomerStatus
from contracts.customer import CustomerStatusChanged
from servicekit.clock import utc_now
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from services.customer.customers.models import Customer
from services.customer.customers.service import check_version, get_customer, refuse_erased
from services.customer.status import lifecycle
from services.customer.status.models import StatusChange, StatusChangeRequest, reason_facts


async def change_status(
    *, session: AsyncSession, customer_id: str, request: StatusChangeRequest, expected: frozenset[int] | None = None
) -> Customer:
    """Move the customer along its lifecycle; 409 with the reason when the move is not allowed."""
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    refuse_erased(customer)
    check_version(customer, expected)
    current = CustomerStatus(customer.status)
    try:
        lifecycle.check_transition(current, request.status)
    except lifecycle.InvalidTransition as exc:
        raise Problem(
            409,
            "Invalid status transition",
            str(exc),
            code="invalid_transition",
            status_from=current.value,
            status_to=request.status.value,
            allowed=sorted(s.value for s in lifecycle.allowed_targets(current)),
        ) from None
    problems = lifecycle.check_details(
        request.status, reason=request.reason, churned_at=request.churned_at, today=utc_now().date()
    )
    if problems:
        raise Problem(
            422,
            "Invalid request",
            "; ".join(f"{p.field}: {p.message}" for p in problems),
            code="validation",
            errors=[field_error(p.field, p.message) for p in problems],
        )

    now = utc_now()
    customer.status = request.status
    customer.status_changed_at = now
    if request.status == CustomerStatus.churned:
        customer.churned_at = request.churned_at
        customer.churn_reason = request.reason
    customer.version += 1
    customer.updated_at = now
    session.add(
        StatusChange(
            customer_id=customer.id,
            previous_status=current,
            status=request.status,
            reason=request.reason,
            churned_at=request.churned_at,
            note=request.note,
            version=customer.version,
            changed_at=now,
        )
    )
    await session.flush()
    await enqueue(
        session,
        CustomerStatusChanged(
            customer_id=customer.id,
            previous_status=current,
            status=request.status,
            reason=request.reason.value if request.reason else None,
            **reason_facts(request.reason),
            churned_at=request.churned_at,
            changed_at=now,
            version=customer.version,
        ),
    )
    return customer


async def status_history(
    *, session: AsyncSession, customer_id: str, limit: int, offset: int
) -> tuple[list[StatusChange], int]:
    await get_customer(session=session, customer_id=customer_id)
    where = col(StatusChange.customer_id) == customer_id
    total = (await session.execute(select(func.count()).select_from(StatusChange).where(where))).scalar_one()
    query = select(StatusChange).where(where).order_by(col(StatusChange.id).desc()).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars()), total
