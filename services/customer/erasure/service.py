"""GDPR erasure: the customer's personal data removed here, and every service's receipt; never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import CustomerErased
from contracts.erasure import ErasureConfirmed
from servicekit.clock import utc_now
from servicekit.outbox import enqueue
from servicekit.problems import not_found
from servicekit.types import as_utc
from services.customer.consent.models import Consent, ConsentChange, ContactProfile
from services.customer.customers.models import ERASED_NAME, Customer, CustomerAttribute, CustomerTag, IdempotencyKey
from services.customer.customers.service import get_customer
from services.customer.erasure.models import ErasureReceipt, ErasureReceiptPublic, ErasureRequest, ErasureStatus
from services.customer.points.models import PointsAccount, PointsEntry
from services.customer.status.models import StatusChange

SELF = "customer"
ERASURE_SUMMARY = (
    "name, e-mail, phone, contacts, tags, external reference, status notes, personal attributes, consent "
    "records, contact preferences, the consent history, the loyalty points ledger and the scored value tier "
    "removed; "
    "kind, segment, owner, status and churn details kept"
)


async def erase_customer(
    *, session: AsyncSession, customer_id: str, keep_attributes: Iterable[str] = ()
) -> tuple[ErasureRequest, bool]:
    """Remove the customer's personal data, keep the anonymous classification, record this service's
    receipt and emit customer.erased (other services erase their copies) and erasure.confirmed.

    Returns the erasure request and whether it was made now (a repeated DELETE changes nothing).
    """
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    request = await session.get(ErasureRequest, customer_id)
    if request is not None and customer.erased_at is not None:
        return request, False

    now = utc_now()
    keep = set(keep_attributes)
    customer.name = ERASED_NAME
    customer.email = None
    customer.phone = None
    customer.contacts = []
    customer.external_ref = None  # links the record to the person in the ERP
    customer.tags = []
    customer.attributes = {k: v for k, v in customer.attributes.items() if k in keep}
    # The scored tier goes as the scoring service forgets the scores (a later score.updated is ignored).
    customer.scored_tier = customer.scored_tier_at = None
    customer.erased_at = now
    customer.version += 1
    customer.updated_at = now
    await session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == customer_id))
    await session.execute(
        delete(CustomerAttribute).where(
            col(CustomerAttribute.customer_id) == customer_id, col(CustomerAttribute.key).not_in(keep)
        )
    )
    await session.execute(update(StatusChange).where(col(StatusChange.customer_id) == customer_id).values(note=None))
    # The stored request hash was computed over the personal data.
    await session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.customer_id) == customer_id))
    # Consent: the per-channel records, the contact profile (time zone) and the consent audit trail.
    for model in (Consent, ConsentChange, ContactProfile):
        await session.execute(delete(model).where(col(model.customer_id) == customer_id))  # type: ignore[attr-defined]
    # Loyalty points: the ledger and the account (balance, tier); the ERP keeps its own documents.
    for ledger in (PointsEntry, PointsAccount):
        await session.execute(delete(ledger).where(col(ledger.customer_id) == customer_id))  # type: ignore[attr-defined]
    if request is None:
        request = ErasureRequest(customer_id=customer_id, requested_at=now)
        session.add(request)
    await session.flush()
    await record_receipt(
        session=session, customer_id=customer_id, service=SELF, confirmed_at=now, summary=ERASURE_SUMMARY
    )
    await enqueue(
        session,
        CustomerErased(customer_id=customer_id, erased_at=now),
        ErasureConfirmed(customer_id=customer_id, service=SELF, erased_at=now, summary=ERASURE_SUMMARY),
    )
    return request, True


async def record_receipt(
    *,
    session: AsyncSession,
    customer_id: str,
    service: str,
    confirmed_at: datetime,
    summary: str = "",
    event_id: str | None = None,
) -> ErasureReceipt | None:
    """Record one service's erasure confirmation; None if the customer is unknown here.

    Idempotent: a repeated confirmation (same or new event id) keeps the earliest confirmation time.
    """
    if await session.get(Customer, customer_id) is None:
        return None
    confirmed_at = as_utc(confirmed_at)
    receipt = await session.get(ErasureReceipt, (customer_id, service))
    if receipt is None:
        receipt = ErasureReceipt(
            customer_id=customer_id, service=service, confirmed_at=confirmed_at, summary=summary, event_id=event_id
        )
        session.add(receipt)
    elif confirmed_at < receipt.confirmed_at:
        receipt.confirmed_at = confirmed_at
        receipt.summary = summary or receipt.summary
        receipt.event_id = event_id
    await session.flush()
    return receipt


async def erasure_status(*, session: AsyncSession, customer_id: str, expected_services: Sequence[str]) -> ErasureStatus:
    await get_customer(session=session, customer_id=customer_id)
    request = await session.get(ErasureRequest, customer_id)
    if request is None:
        raise not_found(
            "erasure", title="No erasure requested", detail=f"No erasure was requested for customer {customer_id}."
        )
    query = select(ErasureReceipt).where(col(ErasureReceipt.customer_id) == customer_id)
    receipts = {r.service: r for r in (await session.execute(query)).scalars()}
    services: dict[str, datetime | None] = {
        name: receipts[name].confirmed_at if name in receipts else None for name in expected_services
    }
    # A service outside the expected list that confirmed anyway is shown too.
    services.update({name: r.confirmed_at for name, r in receipts.items() if name not in services})
    return ErasureStatus(
        customer_id=customer_id,
        requested_at=request.requested_at,
        services=services,
        complete=all(name in receipts for name in expected_services),
        receipts=[
            ErasureReceiptPublic(service=r.service, confirmed_at=r.confirmed_at, summary=r.summary)
            for r in sorted(receipts.values(), key=lambda r: r.confirmed_at)
        ],
    )
