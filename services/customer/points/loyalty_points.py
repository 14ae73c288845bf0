"""Loyalty points: the pure rules of the ledger and the member tiers (docs/loyalty-points.md).

No I/O here: services/customer/points/service.py applies these to the ledger tables in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class EntryKind(StrEnum):
    earn = "earn"  # adds to the balance and to the lifetime points
    redeem = "redeem"  # takes from the balance
    expire = "expire"  # takes from the balance
    adjust = "adjust"  # a signed correction of the balance and the lifetime points


class Tier(BaseModel):
    """A member tier: reached with ``min_lifetime_points`` earned points; ``benefits`` are codes offers use."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[a-z0-9_-]{1,30}$")
    min_lifetime_points: int = Field(ge=0)
    benefits: tuple[str, ...] = ()


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(code="member", min_lifetime_points=0, benefits=("points_on_purchase",)),
    Tier(code="silver", min_lifetime_points=1000, benefits=("points_on_purchase", "free_shipping")),
    Tier(
        code="gold",
        min_lifetime_points=5000,
        benefits=("points_on_purchase", "free_shipping", "priority_support", "birthday_offer"),
    ),
)


def tier_for(lifetime_points: int, tiers: Sequence[Tier]) -> Tier | None:
    """The highest tier whose threshold the lifetime points reach, or None below every tier."""
    reached = [t for t in tiers if lifetime_points >= t.min_lifetime_points]
    return max(reached, key=lambda t: t.min_lifetime_points) if reached else None


@dataclass(frozen=True, slots=True)
class Movement:
    """How an entry changes the account: ``balance`` and ``lifetime`` are the deltas."""

    balance: int
    lifetime: int


class BeyondBalance(Exception):
    """The entry would take the balance below zero."""


def movement(kind: EntryKind, amount: int) -> Movement:
    """The deltas of an entry. ``amount`` is positive for earn, redeem and expire, non-zero for adjust."""
    if kind is EntryKind.adjust:
        if amount == 0:
            raise ValueError("an adjustment must not be zero")
        return Movement(balance=amount, lifetime=amount)
    if amount <= 0:
        raise ValueError("points must be positive")
    if kind is EntryKind.earn:
        return Movement(balance=amount, lifetime=amount)
    return Movement(balance=-amount, lifetime=0)


def apply(balance: int, lifetime: int, kind: EntryKind, amount: int) -> tuple[int, int]:
    """(new balance, new lifetime points); BeyondBalance when the balance would fall below zero.

    A negative adjustment lowers the lifetime points too (a correction of points earned in error), never
    below zero.
    """
    move = movement(kind, amount)
    new_balance = balance + move.balance
    if new_balance < 0:
        raise BeyondBalance
    return new_balance, max(0, lifetime + move.lifetime)


def check_tiers(tiers: Sequence[Tier]) -> None:
    """Tier codes and thresholds must be unique (raises ValueError)."""
    codes = [t.code for t in tiers]
    if len(set(codes)) != len(codes):
        raise ValueError("tier codes must be unique")
    thresholds = [t.min_lifetime_points for t in tiers]
    if len(set(thresholds)) != len(thresholds):
        raise ValueError("tier thresholds must be unique")
