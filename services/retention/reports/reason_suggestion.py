"""Suggested churn reason: which reason the signals before a churn point to, with evidence and confidence.

Each signal kind (and category) votes for one reason code of the churn-reason taxonomy with a fixed
weight (SIGNAL_REASONS); the suggestion is the reason with the largest total, its confidence that total
over all votes. Evidence is the signals that voted for it (ids, kinds, categories, times; no personal
data). No signal, no suggestion. Pure: no I/O, no clock (docs/reports.md, "Suggested churn reason").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

# Reason codes (the customer service's taxonomy) a suggestion can name.
PRODUCT_QUALITY = "product_quality"
POOR_SERVICE = "poor_service"
STAFF_TURNOVER = "staff_turnover"
PRICE = "price"
COMPETITOR = "competitor"
SUGGESTABLE = (PRODUCT_QUALITY, POOR_SERVICE, STAFF_TURNOVER, PRICE, COMPETITOR)

# (signal kind, category or None for any) -> (reason, weight). The most specific entry wins.
SIGNAL_REASONS: dict[tuple[str, str | None], tuple[str, float]] = {
    ("complaint", "product_quality"): (PRODUCT_QUALITY, 2.0),
    ("complaint", "service"): (POOR_SERVICE, 2.0),
    ("complaint", "delivery"): (POOR_SERVICE, 2.0),
    ("complaint", "staff"): (POOR_SERVICE, 2.0),
    ("complaint", "billing"): (PRICE, 2.0),
    ("complaint", "other"): (POOR_SERVICE, 1.0),
    ("complaint", None): (POOR_SERVICE, 1.0),
    ("complaint_overdue", None): (POOR_SERVICE, 1.5),  # a complaint left past its deadline: a service incident
    ("incident", None): (POOR_SERVICE, 1.0),  # a support ticket
    ("return", None): (PRODUCT_QUALITY, 1.0),  # goods sent back
    ("owner_change", None): (STAFF_TURNOVER, 2.0),  # the account manager changed
    ("price_contact", None): (PRICE, 1.5),  # an interaction about prices or billing
    ("competitor_contact", None): (COMPETITOR, 2.0),  # an interaction that mentions a competitor offer
}
EVIDENCE_KEPT = 10


@dataclass(frozen=True, slots=True)
class SignalFact:
    event_id: str
    kind: str
    category: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Suggestion:
    reason: str | None  # None: no signal pointed anywhere
    confidence: float  # the reason's votes / all votes, 0 without a suggestion
    votes: dict[str, float]
    evidence: list[SignalFact]


def vote(signal: SignalFact) -> tuple[str, float] | None:
    return SIGNAL_REASONS.get((signal.kind, signal.category)) or SIGNAL_REASONS.get((signal.kind, None))


def suggest(signals: Sequence[SignalFact]) -> Suggestion:
    """The reason the signals point to; ties go to the reason listed first in SUGGESTABLE."""
    votes: dict[str, float] = {}
    voters: dict[str, list[SignalFact]] = {}
    for signal in signals:
        cast = vote(signal)
        if cast is None:
            continue
        reason, weight = cast
        votes[reason] = votes.get(reason, 0.0) + weight
        voters.setdefault(reason, []).append(signal)
    if not votes:
        return Suggestion(reason=None, confidence=0.0, votes={}, evidence=[])
    best = max(SUGGESTABLE, key=lambda r: (votes.get(r, 0.0), -SUGGESTABLE.index(r)))
    evidence = sorted(voters[best], key=lambda s: (s.at, s.event_id), reverse=True)[:EVIDENCE_KEPT]
    return Suggestion(
        reason=best, confidence=votes[best] / sum(votes.values()), votes=dict(sorted(votes.items())), evidence=evidence
    )


def recorded_reason(code: str | None) -> str | None:
    """A recorded reason as the taxonomy names it now (service_quality was renamed poor_service)."""
    return "poor_service" if code == "service_quality" else code
