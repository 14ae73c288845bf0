"""The loyalty points ledger: domain functions that change state and enqueue events, never commit.

Every entry is a row of points_entries; the account row (points_accounts) holds the balance and the
lifetime points, updated in the same transaction under the customer's row lock, so a read is one row.
An entry is booked once per (source, source_ref): a replayed ERP document finds its earlier entry and
changes nothing. A redemption or expiry beyond the balance is refused. When the member tier changes,
loyalty.tier_changed is enqueued with it. docs/loyalty-points.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import LoyaltyTierChanged
from servicekit.clock import utc_now
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from services.customer.customers.models import Customer
from services.customer.customers.service import get_customer
from services.customer.points import loyalty_points as rules
from services.customer.points.loyalty_points import EntryKind, Tier
from services.customer.points.models import (
    PointsAccount,
    PointsAdjustment,
    PointsBooked,
    PointsEntry,
    PointsEntryPublic,
    PointsPublic,
    TierPublic,
)


@dataclass(frozen=True, slots=True)
class Booking:
    kind: EntryKind
    amount: int
    source: str
    source_ref: str
    occurred_at: datetime
    reason: str | None = None


class ErasedCustomer(Exception):
    """The customer's personal data was erased: no points can be booked."""


class RefUsedElsewhere(Exception):
    """The (source, source_ref) was booked before for another customer or as another movement."""


class BeyondBalance(Exception):
    """A redemption, expiry or negative adjustment larger than the balance."""


def _tier_public(tier: Tier | None) -> TierPublic | None:
    if tier is None:
        return None
    return TierPublic(code=tier.code, min_lifetime_points=tier.min_lifetime_points, benefits=list(tier.benefits))


async def _existing(session: AsyncSession, source: str, source_ref: str) -> PointsEntry | None:
    query = select(PointsEntry).where(col(PointsEntry.source) == source, col(PointsEntry.source_ref) == source_ref)
    return (await session.execute(query)).scalar_one_or_none()


async def book(
    *, session: AsyncSession, customer: Customer, booking: Booking, tiers: Sequence[Tier]
) -> tuple[PointsEntry, PointsAccount, bool]:
    """Book one entry on a customer locked by the caller; (entry, account, replayed).

    A repeat of (source, source_ref) with the same customer, kind and amount returns the earlier entry
    and changes nothing; with anything else it raises RefUsedElsewhere.
    """
    if customer.erased_at is not None:
        raise ErasedCustomer
    seen = await _existing(session, booking.source, booking.source_ref)
    account = await session.get(PointsAccount, customer.id, with_for_update=True, populate_existing=True)
    if seen is not None:
        if (seen.customer_id, seen.kind, seen.amount) != (customer.id, booking.kind, booking.amount):
            raise RefUsedElsewhere
        if account is None:  # pragma: no cover - an entry always comes with its account
            raise RefUsedElsewhere
        return seen, account, True
    if account is None:
        account = PointsAccount(customer_id=customer.id, balance=0, lifetime_points=0, entries=0)
        session.add(account)
    try:
        balance, lifetime = rules.apply(account.balance, account.lifetime_points, booking.kind, booking.amount)
    except rules.BeyondBalance:
        raise BeyondBalance from None
    now = utc_now()
    previous_tier = account.tier
    tier = rules.tier_for(lifetime, tiers)
    account.balance, account.lifetime_points = balance, lifetime
    account.tier = tier.code if tier else None
    account.entries += 1
    account.updated_at = now
    entry = PointsEntry(
        customer_id=customer.id,
        kind=booking.kind,
        amount=booking.amount,
        balance_after=balance,
        reason=booking.reason,
        source=booking.source,
        source_ref=booking.source_ref,
        occurred_at=as_utc(booking.occurred_at),
        recorded_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(entry)
            await session.flush()
    except IntegrityError:
        # Another customer's request booked this (source, source_ref) at the same moment.
        raise RefUsedElsewhere from None
    if account.tier != previous_tier:
        await enqueue(
            session,
            LoyaltyTierChanged(
                customer_id=customer.id,
                tier=account.tier,
                previous_tier=previous_tier,
                benefits=list(tier.benefits) if tier else [],
                lifetime_points=lifetime,
                balance=balance,
                changed_at=now,
            ),
        )
    return entry, account, False


# ---- API -------------------------------------------------------------------------------------------------


def _beyond_balance(balance: int) -> Problem:
    return Problem(
        409,
        "Not enough points",
        f"The balance is {balance} points; this entry would take it below zero.",
        code="insufficient_points",
        errors=[field_error("amount", "exceeds the points balance")],
    )


async def adjust(
    *, session: AsyncSession, customer_id: str, body: PointsAdjustment, tiers: Sequence[Tier]
) -> PointsBooked:
    """POST /customers/{id}/points."""
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    booking = Booking(
        kind=body.kind,
        amount=body.amount,
        source=body.source,
        source_ref=body.source_ref,
        occurred_at=body.occurred_at or utc_now(),
        reason=body.reason,
    )
    try:
        entry, account, replayed = await book(session=session, customer=customer, booking=booking, tiers=tiers)
    except ErasedCustomer:
        raise Problem(
            409,
            "Customer erased",
            "This customer's personal data was erased; no points can be booked.",
            code="erased",
        ) from None
    except RefUsedElsewhere:
        raise Problem(
            409,
            "Reference already booked",
            "This source_ref was booked before as a different entry; use the document's own id.",
            code="source_ref_reused",
            errors=[field_error("source_ref", "already booked as a different entry")],
        ) from None
    except BeyondBalance:
        account = await session.get(PointsAccount, customer_id)
        raise _beyond_balance(account.balance if account else 0) from None
    return PointsBooked(
        entry=PointsEntryPublic.model_validate(entry),
        replayed=replayed,
        balance=account.balance,
        lifetime_points=account.lifetime_points,
        tier=account.tier,
    )


async def read(
    *, session: AsyncSession, customer_id: str, tiers: Sequence[Tier], limit: int, offset: int
) -> PointsPublic:
    """GET /customers/{id}/points: the balance, the member tier and the ledger page, newest first."""
    await get_customer(session=session, customer_id=customer_id)
    account = await session.get(PointsAccount, customer_id)
    where = col(PointsEntry.customer_id) == customer_id
    total = (await session.execute(select(func.count()).select_from(PointsEntry).where(where))).scalar_one()
    query = select(PointsEntry).where(where).order_by(col(PointsEntry.id).desc()).offset(offset).limit(limit)
    items = [PointsEntryPublic.model_validate(e) for e in (await session.execute(query)).scalars()]
    lifetime = account.lifetime_points if account else 0
    tier = rules.tier_for(lifetime, tiers) if account is not None else None
    higher = sorted((t for t in tiers if t.min_lifetime_points > lifetime), key=lambda t: t.min_lifetime_points)
    return PointsPublic(
        customer_id=customer_id,
        balance=account.balance if account else 0,
        lifetime_points=lifetime,
        tier=_tier_public(tier),
        next_tier=_tier_public(higher[0]) if higher else None,
        items=items,
        total=total,
        limit=limit,
        offset=offset,
    )


# ---- inbound ERP events ------------------------------------------------------------------------------


async def book_inbound(
    *, session: AsyncSession, customer_ref: str, booking: Booking, tiers: Sequence[Tier]
) -> Customer | None:
    """An erp.loyalty.v1 event; None when no customer has this reference (the other refusals raise)."""
    query = select(Customer).where(col(Customer.external_ref) == customer_ref).with_for_update()
    customer = (await session.execute(query)).scalar_one_or_none()
    if customer is None:
        return None
    await book(session=session, customer=customer, booking=booking, tiers=tiers)
    return customer


__all__ = ["Booking", "adjust", "book", "book_inbound", "read"]
