"""Customer domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from servicekit.events.contracts.customer import CustomerCreated
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from services.customer.models import Customer, CustomerCreate


async def create_customer(*, session: AsyncSession, data: CustomerCreate) -> tuple[Customer, bool]:
    """Create a customer; a repeated external_ref returns the existing one (idempotent create).

    Returns the customer and whether it was created now.
    """
    if data.external_ref is not None:
        existing = await find_by_external_ref(session=session, external_ref=data.external_ref)
        if existing is not None:
            return existing, False
    customer = Customer.model_validate(data)
    session.add(customer)
    await session.flush()
    await enqueue(
        session,
        CustomerCreated(
            customer_id=customer.id,
            kind=customer.kind,
            status=customer.status,
            external_ref=customer.external_ref,
            segment=customer.segment,
            owner=customer.owner,
            tags=customer.tags,
            attributes=customer.attributes,
            created_at=customer.created_at,
        ),
    )
    return customer, True


async def get_customer(*, session: AsyncSession, customer_id: str) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise Problem(
            404,
            "Customer not found",
            f"No customer with id {customer_id}",
            code="not_found",
            errors=[field_error("id", "unknown customer")],
        )
    return customer


async def find_by_external_ref(*, session: AsyncSession, external_ref: str) -> Customer | None:
    return (await session.execute(select(Customer).where(Customer.external_ref == external_ref))).scalar_one_or_none()
