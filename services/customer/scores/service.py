"""Keep each customer's scored value tier from score.updated; no I/O besides the one statement."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, or_, update
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


def latest_scores(scores: Iterable[ScoreUpdated]) -> list[ScoreUpdated]:
    """Of each customer's scores, the one computed last (of equal times the later in the list): what
    applying them one by one through apply_score's guard leaves on the customer."""
    latest: dict[str, ScoreUpdated] = {}
    for data in scores:
        held = latest.get(data.customer_id)
        if held is None or as_utc(data.computed_at) >= as_utc(held.computed_at):
            latest[data.customer_id] = data
    return list(latest.values())


_TABLE = Customer.__table__  # type: ignore[attr-defined]
# apply_score's guarded UPDATE on the table, its values bound per row: one executemany for a batch.
_GUARDED = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("_id"),
        _TABLE.c.erased_at.is_(None),
        or_(_TABLE.c.scored_tier_at.is_(None), _TABLE.c.scored_tier_at <= bindparam("_at")),
    )
    .values(scored_tier=bindparam("_tier"), scored_tier_at=bindparam("_at"))
)


async def apply_scores(*, session: AsyncSession, scores: Sequence[ScoreUpdated]) -> None:
    """apply_score for a consumer batch's scores: the latest per customer, one guarded UPDATE run for all
    of them (an import's score batch names hundreds of customers, each once or more)."""
    rows = [
        {"_id": data.customer_id, "_tier": scored_tier(data), "_at": as_utc(data.computed_at)}
        # In id order, as the bulk status route locks customers, so the two cannot deadlock.
        for data in sorted(latest_scores(scores), key=lambda d: d.customer_id)
    ]
    if rows:
        await session.execute(_GUARDED, rows)
