"""Campaign statistics: holdout assignment, uplift with a confidence interval, cost and ROI. Pure: no I/O.

Uplift is the difference of two proportions, the won-back rate of the treated group minus that of the
holdout. Its interval is Newcombe's hybrid score interval (method 10 of Newcombe, 1998): each rate gets a
Wilson score interval and the two are combined. Unlike the plain normal (Wald) interval it stays inside
[-1, 1] and keeps its coverage with small groups or rates near 0 or 1, which campaign holdouts often are.
The p-value is the pooled two-proportion z-test's, two-sided. docs/campaigns.md.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

TREATED, HOLDOUT = "treated", "holdout"


def assign_group(campaign_id: str, customer_id: str, holdout_share: float) -> str:
    """The customer's group in the campaign: a stable draw from a hash of both ids, so a retried launch
    assigns every customer the same way and no one can be moved between groups after the fact."""
    if holdout_share <= 0:
        return TREATED
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return HOLDOUT if draw < holdout_share else TREATED


def z_for(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    return NormalDist().inv_cdf((1 + confidence) / 2)


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, n: int, z: float) -> Interval | None:
    """Wilson score interval of a proportion; None without observations."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must lie between 0 and n")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = (z / denominator) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


@dataclass(frozen=True, slots=True)
class Uplift:
    treated_rate: float
    holdout_rate: float
    difference: float  # treated minus holdout, in rate points (0.05 = five percentage points)
    low: float
    high: float
    confidence: float
    p_value: float | None  # pooled two-proportion z-test, two-sided; None when the pooled rate is 0 or 1
    method: str = "newcombe-wilson"


def uplift(
    treated_successes: int, treated_n: int, holdout_successes: int, holdout_n: int, *, confidence: float = 0.95
) -> Uplift | None:
    """Treated minus holdout rate with Newcombe's hybrid score interval; None when either group is empty."""
    z = z_for(confidence)
    a = wilson(treated_successes, treated_n, z)
    b = wilson(holdout_successes, holdout_n, z)
    if a is None or b is None:
        return None
    p1, p2 = treated_successes / treated_n, holdout_successes / holdout_n
    d = p1 - p2
    low = d - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = d + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    pooled = (treated_successes + holdout_successes) / (treated_n + holdout_n)
    p_value: float | None = None
    if 0 < pooled < 1:
        se = math.sqrt(pooled * (1 - pooled) * (1 / treated_n + 1 / holdout_n))
        p_value = math.erfc(abs(d) / se / math.sqrt(2))
    return Uplift(p1, p2, d, max(-1.0, low), min(1.0, high), confidence, p_value)


@dataclass(frozen=True, slots=True)
class Money:
    cost: float
    value_won_back: float
    incremental_value: float | None  # value beyond what the holdout suggests would have come anyway
    roi: float | None  # (value won back - cost) / cost
    incremental_roi: float | None  # (incremental value - cost) / cost


def money(
    *,
    reached: int,
    redeemed: int,
    cost_per_touch: float,
    cost_per_redemption: float,
    treated_value: float,
    treated_n: int,
    holdout_value: float,
    holdout_n: int,
) -> Money:
    """The campaign's cost (every touch sent, every redemption) against the value its treated group brought
    in; the incremental value subtracts the holdout's value per customer scaled to the treated group."""
    cost = reached * cost_per_touch + redeemed * cost_per_redemption
    incremental = None
    if holdout_n > 0:
        incremental = treated_value - holdout_value / holdout_n * treated_n
    roi = (treated_value - cost) / cost if cost > 0 else None
    incremental_roi = (incremental - cost) / cost if cost > 0 and incremental is not None else None
    return Money(cost, treated_value, incremental, roi, incremental_roi)
