"""Keep each customer's scored value tier from score.updated; no I/O besides the one statement."""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import VALUE_TIERS
from contracts.scoring import ScoreUpdated
from servicekit.types import as_utc
from services.customer.customers.models import Customer


def scored_tier(data: ScoreUpdated) -> str | None:
    """The score's value tier if it is one of the value tiers, else None (a score without a value model)."""
    tier = data.current.value_tier
    return tier.lower() if tier is not None and tier.lower() in VALUE_TIERS else None


async def apply_score(*, session: AsyncSession, data: ScoreUpdated) -> bool:
    """Hold the score's value tier on the customer unless the customer is erased or unknown, or holds a
    score computed later. One guarded UPDATE, so a concurrent write to the row cannot interleave; a
    redelivery (same computed_at) writes the same values again. Returns whether the row was written."""
    at = as_utc(data.computed_at)
    result = await session.execute(
        update(Customer)
        .where(
            col(Customer.id) == data.customer_id,
            col(Customer.erased_at).is_(None),
            or_(col(Customer.scored_tier_at).is_(None), col(Customer.scored_tier_at) <= at),
        )
        .values(scored_tier=scored_tier(data), scored_tier_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
