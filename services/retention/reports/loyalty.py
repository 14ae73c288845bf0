"""Loyalty typing: behaviour (repeat purchase, tenure, share of wallet, trend) x attitude (NPS, CSAT).

The source's loyalty types on the behaviour x attitude matrix (docs/reports.md, "Loyalty"):

| behaviour \\ attitude | high | low |
|---|---|---|
| high | true | spurious (inertia) |
| low | latent | none |

A customer who never answered a survey has no measured attitude: ``unmeasured``. The satisfaction trap
flag marks satisfied customers (high attitude) whose buying declines. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LoyaltyType(StrEnum):
    true = "true"
    latent = "latent"
    spurious = "spurious"  # the source's inertia loyalty: buys out of habit, without preference
    none = "none"
    unmeasured = "unmeasured"  # no NPS or CSAT answer: attitude unknown


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where behaviour and attitude count as high; the defaults are RetentionSettings' loyalty_* values."""

    repeat_orders: int = 3  # behaviour high needs at least this many orders ...
    min_tenure_days: float = 180.0  # ... a first order at least this long ago ...
    min_share_of_wallet: float = 0.5  # ... this share of wallet where one is known ...
    trend_window_days: float = 90.0  # ... and no decline: orders in the latest window vs the one before
    decline_ratio: float = 0.5  # declining: recent orders <= prior orders x this (with prior >= 1)
    nps_promoter: int = 9  # attitude high: the latest NPS at least this (recommends) ...
    csat_satisfied: int = 4  # ... or, without an NPS answer, the latest CSAT at least this


@dataclass(frozen=True, slots=True)
class Behaviour:
    orders: int  # purchases recorded to date
    tenure_days: float | None  # days since the first purchase (None: never bought)
    recent_orders: int  # purchases in the latest trend window (ending at the as-of instant)
    prior_orders: int  # purchases in the window before it
    share_of_wallet: float | None = None  # 0..1 where an estimate is known


@dataclass(frozen=True, slots=True)
class Attitude:
    nps: int | None  # the latest NPS answer (0-10)
    csat: int | None  # the latest CSAT answer (1-5)


@dataclass(frozen=True, slots=True)
class Loyalty:
    type: LoyaltyType
    behaviour_high: bool
    attitude_high: bool | None  # None: unmeasured
    declining: bool
    repeat_rate: float | None  # repeat purchases / purchases = (orders - 1) / orders
    satisfaction_trap: bool


def declining(b: Behaviour, t: Thresholds) -> bool:
    """Buying declines: the latest window has at most decline_ratio of the previous window's orders."""
    return b.prior_orders >= 1 and b.recent_orders <= b.prior_orders * t.decline_ratio


def behaviour_high(b: Behaviour, t: Thresholds) -> bool:
    if b.orders < t.repeat_orders or b.tenure_days is None or b.tenure_days < t.min_tenure_days:
        return False
    if b.share_of_wallet is not None and b.share_of_wallet < t.min_share_of_wallet:
        return False
    return not declining(b, t)


def attitude_high(a: Attitude, t: Thresholds) -> bool | None:
    """The latest NPS decides when there is one (recommending); else the latest CSAT; None when neither."""
    if a.nps is not None:
        return a.nps >= t.nps_promoter
    if a.csat is not None:
        return a.csat >= t.csat_satisfied
    return None


def repeat_rate(orders: int) -> float | None:
    return (orders - 1) / orders if orders > 0 else None


def classify(b: Behaviour, a: Attitude, t: Thresholds = Thresholds()) -> Loyalty:
    high_b = behaviour_high(b, t)
    high_a = attitude_high(a, t)
    falling = declining(b, t)
    if high_a is None:
        kind = LoyaltyType.unmeasured
    elif high_b:
        kind = LoyaltyType.true if high_a else LoyaltyType.spurious
    else:
        kind = LoyaltyType.latent if high_a else LoyaltyType.none
    return Loyalty(
        type=kind,
        behaviour_high=high_b,
        attitude_high=high_a,
        declining=falling,
        repeat_rate=repeat_rate(b.orders),
        satisfaction_trap=bool(high_a) and falling,
    )
