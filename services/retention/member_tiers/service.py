"""Keeping the member-tier replica. Domain functions only: they never commit.

Why a replica and not an alert: a member tier follows lifetime earned points, so it rises with purchases
and falls only when the ERP corrects points booked in error. A rise is good news, and a fall is a
bookkeeping correction, not the customer's behaviour; falling purchases, the real churn signal, already
move the churn score (recency, spend trend) and raise alerts there. What the loop lacked is acting on the
tier: retention keeps it so a campaign can be limited to member tiers (`member_tiers`, e.g. a win-back
offer for gold members using their benefits), docs/campaigns.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import LoyaltyTierChanged
from servicekit.sql import chunks
from servicekit.types import as_utc
from services.retention.member_tiers.models import MemberTier
from services.retention.replica.models import Customer

NO_TIER = "none"  # how a campaign names customers below the lowest tier


async def on_tier_changed(session: AsyncSession, data: LoyaltyTierChanged) -> None:
    """Keep the latest change (an older or repeated one changes nothing); nothing after erasure."""
    customer = await session.get(Customer, data.customer_id)
    if customer is not None and customer.erased_at is not None:
        return
    row = await session.get(MemberTier, data.customer_id, with_for_update=True)
    changed_at = as_utc(data.changed_at)
    if row is None:
        session.add(
            MemberTier(
                customer_id=data.customer_id, tier=data.tier, benefits=list(data.benefits), changed_at=changed_at
            )
        )
    elif changed_at > as_utc(row.changed_at):
        row.tier, row.benefits, row.changed_at = data.tier, list(data.benefits), changed_at
    await session.flush()


async def erase(session: AsyncSession, customer_id: str) -> None:
    await session.execute(delete(MemberTier).where(col(MemberTier.customer_id) == customer_id))


async def benefits_of(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
    """The member tier and its benefit codes of each customer who has one (others are left out)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for chunk in chunks(list(customer_ids)):
        for customer_id, tier, benefits in await session.execute(
            select(MemberTier.customer_id, MemberTier.tier, MemberTier.benefits).where(
                col(MemberTier.customer_id).in_(chunk)
            )
        ):
            found[customer_id] = (tier, list(benefits or []))
    return found


async def tiers_of(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, str]:
    """Each customer's member tier code, NO_TIER for those without one (or not yet known)."""
    found: dict[str, str] = {}
    for chunk in chunks(list(customer_ids)):
        for customer_id, tier in await session.execute(
            select(MemberTier.customer_id, MemberTier.tier).where(col(MemberTier.customer_id).in_(chunk))
        ):
            found[customer_id] = tier or NO_TIER
    return {c: found.get(c, NO_TIER) for c in customer_ids}
