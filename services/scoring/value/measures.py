"""Customer value as the source defines it, RFM scores and segments, the pyramid and concentration.
Pure: no I/O, no clock. The report queries (services.scoring.reports.service and .rfm) compute the same formulas
in SQL; these functions are their definition and the per-customer answer, and docs/reports.md (Value)
states each one.

- historical value (contribution to date) = margin x revenue - cost to serve, where
  cost to serve = contacts x cost per contact + complaints x cost per complaint + returns x cost per return;
- current value = the CLV of the active value model (services.scoring.value.valuation);
- potential value = max(wallet estimate - revenue, 0) and share of wallet = revenue / wallet estimate,
  where the customer's ``wallet_estimate`` attribute is known;
- referral value = the amounts of referral interactions that carry one + the unit value for each that does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.customer import VALUE_TIERS

TIERS = VALUE_TIERS
PLATINUM, GOLD, IRON, LEAD = TIERS
CONTRIBUTION, CLV = "contribution", "clv"
# The customer attribute (a number, in the currency of purchases) holding the ERP's estimate of what the
# customer spends in our categories with every supplier over the same span as their history with us.
WALLET_ATTRIBUTE = "wallet_estimate"
# An interaction (of any type but purchase, return, complaint or survey) in this category is a referral.
REFERRAL_CATEGORY = "referral"
RFM_BUCKETS = 5


@dataclass(frozen=True, slots=True)
class ValueCosts:
    """Unit costs of serving a customer and what a referral is worth without a stated amount."""

    per_contact: float = 0.0
    per_complaint: float = 0.0
    per_return: float = 0.0
    margin: float = 1.0  # share of revenue that is gross profit
    referral_value: float = 0.0


@dataclass(frozen=True, slots=True)
class ValueCounters:
    """The counters the feature state keeps per customer (services.scoring.scores.features)."""

    revenue: float = 0.0
    contacts: int = 0
    complaints: int = 0
    returns: int = 0
    referrals: int = 0
    referral_amount: float = 0.0
    referrals_with_amount: int = 0
    wallet_estimate: float | None = None


def cost_to_serve(c: ValueCounters, costs: ValueCosts) -> float:
    return c.contacts * costs.per_contact + c.complaints * costs.per_complaint + c.returns * costs.per_return


def contribution(c: ValueCounters, costs: ValueCosts) -> float:
    """Historical value: margin x revenue - cost to serve (negative for a customer who costs more than it brings)."""
    return costs.margin * c.revenue - cost_to_serve(c, costs)


def referral_value(c: ValueCounters, costs: ValueCosts) -> float:
    return c.referral_amount + (c.referrals - c.referrals_with_amount) * costs.referral_value


def share_of_wallet(c: ValueCounters) -> float | None:
    """revenue / wallet estimate, None without a positive estimate (may exceed 1 if the estimate is low)."""
    if c.wallet_estimate is None or c.wallet_estimate <= 0:
        return None
    return c.revenue / c.wallet_estimate


def potential_value(c: ValueCounters) -> float | None:
    """Cross-sell / up-sell headroom: max(wallet estimate - revenue, 0); None without an estimate."""
    if c.wallet_estimate is None or c.wallet_estimate <= 0:
        return None
    return max(c.wallet_estimate - c.revenue, 0.0)


def wallet_from_attributes(attributes: dict[str, object]) -> float | None:
    value = attributes.get(WALLET_ATTRIBUTE)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


# ---- ranks: RFM quintiles and the pyramid ----------------------------------------------------------------


def bucket(smaller: int, n: int, buckets: int = RFM_BUCKETS) -> int:
    """1..buckets from the number of customers with a strictly smaller value: 1 + floor(buckets x smaller / n).
    Ties share a bucket (SQL: 1 + buckets * (rank() - 1) / n, integer division)."""
    if n <= 0:
        raise ValueError("no population")
    return 1 + (buckets * smaller) // n


@dataclass(frozen=True, slots=True)
class RfmRule:
    segment: str
    r: tuple[int, int]
    f: tuple[int, int]
    m: tuple[int, int]

    def matches(self, r: int, f: int, m: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1] and self.m[0] <= m <= self.m[1]


# First match wins; a customer no rule matches needs attention.
RFM_RULES: tuple[RfmRule, ...] = (
    RfmRule("champions", (4, 5), (4, 5), (4, 5)),
    RfmRule("loyal", (3, 5), (4, 5), (1, 5)),
    RfmRule("potential_loyalist", (4, 5), (2, 3), (1, 5)),
    RfmRule("new", (4, 5), (1, 1), (1, 5)),
    RfmRule("at_risk", (1, 2), (4, 5), (1, 5)),
    RfmRule("cant_lose", (1, 2), (1, 3), (4, 5)),
    RfmRule("hibernating", (1, 2), (1, 2), (1, 3)),
)
NEEDS_ATTENTION = "needs_attention"
RFM_SEGMENTS = (*(rule.segment for rule in RFM_RULES), NEEDS_ATTENTION)


def rfm_segment(r: int, f: int, m: int) -> str:
    for rule in RFM_RULES:
        if rule.matches(r, f, m):
            return rule.segment
    return NEEDS_ATTENTION


def cumulative_shares(shares: tuple[float, float, float]) -> tuple[float, float, float]:
    a, b, c = shares
    return a, a + b, a + b + c


def tier_for_rank(rank: int, n: int, shares: tuple[float, float, float]) -> str:
    """The pyramid tier of the customer at ``rank`` (1 = most valuable) of ``n``: platinum while
    rank <= n x share of platinum, gold while rank <= n x (platinum + gold), iron likewise, else lead."""
    for tier, cum in zip(TIERS, cumulative_shares(shares), strict=False):
        if rank <= n * cum:
            return tier
    return LEAD


# ---- concentration ----------------------------------------------------------------------------------------


def top_share(values: Sequence[float], share: float = 0.2) -> float | None:
    """Share of the total held by the top ``share`` of customers (at least one; the first
    ceil(n x share)); values below zero count as zero. None when the total is zero."""
    clipped = sorted((max(v, 0.0) for v in values), reverse=True)
    total = sum(clipped)
    if not clipped or total <= 0:
        return None
    top = math.ceil(len(clipped) * share)
    return sum(clipped[:top]) / total


def lorenz(values: Sequence[float], points: int = 10) -> list[tuple[float, float]]:
    """(share of customers, share of value) for k = 1..points: the bottom ceil-bucket k of customers
    ordered by ascending value (customer i of n, 1-based, is in bucket ceil(points x i / n))."""
    clipped = sorted(max(v, 0.0) for v in values)
    n, total = len(clipped), sum(clipped)
    if n == 0 or total <= 0:
        return []
    sums = [0.0] * points
    counts = [0] * points
    for i, v in enumerate(clipped, start=1):
        k = -(-points * i // n)  # ceil
        sums[k - 1] += v
        counts[k - 1] += 1
    out: list[tuple[float, float]] = []
    seen, held = 0, 0.0
    for k in range(points):
        seen += counts[k]
        held += sums[k]
        out.append((seen / n, held / total))
    return out


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient of values below zero counted as zero, with x ascending and i = 1..n:
    G = 2 x sum(i x x_i) / (n x sum(x)) - (n + 1) / n. 0 = everyone equal, (n-1)/n = one holds all."""
    clipped = sorted(max(v, 0.0) for v in values)
    n, total = len(clipped), sum(clipped)
    if n == 0 or total <= 0:
        return None
    weighted = sum(i * v for i, v in enumerate(clipped, start=1))
    return 2 * weighted / (n * total) - (n + 1) / n
