"""The transparent churn-risk and health rules ("rules-v1"). Pure: no I/O, no clock.

Churn risk is a logistic over a weighted sum of rule terms:

    risk = 1 / (1 + exp(-(intercept + sum of contributions)))

Each contribution is in log-odds and is reported as a signed factor (positive raises risk), so a reader
can see exactly why the score is what it is. The logistic keeps the score in 0..1 without ties at a
cap, and makes the rules add up: with the default weights one severe complaint alone stays well below
the default alert threshold (0.6), while several complaints and a customer who has gone silent cross it.

Health is 50 plus signed points from three parts, each measured against a neutral midpoint:
staying (1 - churn risk), satisfaction (last NPS / CSAT) and engagement (how recently we heard from them).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contracts.scoring import Factor
from services.scoring.scores.features import FeatureState, complaints_between, days_between, spend_between

RULES_VERSION = "rules-v1"
TOP_FACTORS = 5


class RuleWeights(BaseModel):
    """Weights of the rule score. Contributions are in log-odds unless the name says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: float = -3.0  # a customer with no signals: risk ~0.05

    # Recency drop: days since the last purchase measured in the customer's own purchase gaps.
    recency_per_gap: float = Field(1.0, ge=0)  # per usual gap overdue
    recency_cap: float = Field(3.0, ge=0)
    recent_purchase: float = Field(0.5, ge=0)  # protective, scaled by how fresh the purchase is
    default_purchase_gap_days: float = Field(30.0, gt=0)  # until a customer has two purchases
    min_purchase_gap_days: float = Field(7.0, gt=0)  # two purchases a day apart are not a rhythm

    # Complaints.
    complaint_30d: float = Field(0.6, ge=0)  # each complaint in the last 30 days
    complaint_90d: float = Field(0.25, ge=0)  # each complaint 31..90 days ago
    complaints_counted: int = Field(5, ge=1)  # per window, more add nothing
    open_complaint: float = Field(0.4, ge=0)
    overdue_complaint: float = Field(0.7, ge=0)
    severe_complaint: float = Field(0.6, ge=0)  # extra, per high/critical complaint in 90 days
    per_kind_counted: int = Field(3, ge=1)  # open, overdue and severe complaints beyond this add nothing

    # Satisfaction.
    nps_detractor: float = Field(1.5, ge=0)  # at NPS 0, falling linearly to 0 at NPS 7
    nps_promoter: float = Field(0.5, ge=0)  # protective, NPS 9-10
    csat_low_per_point: float = Field(0.6, ge=0)  # per point below 3 (of 5)
    csat_top: float = Field(0.3, ge=0)  # protective, CSAT 5
    sentiment_negative: float = Field(1.2, ge=0)  # times the negative sentiment EWMA (-1..0)
    sentiment_positive: float = Field(0.3, ge=0)  # protective, times the positive EWMA

    # Falling spend: the last 90 days against the 90 days before.
    spend_drop: float = Field(1.0, ge=0)  # times the fraction lost
    spend_drop_min: float = Field(0.25, ge=0, le=1)  # smaller drops are noise

    # Health: shares of the three parts (summing to 1) and the engagement half-life.
    health_staying: float = Field(0.6, ge=0)
    health_satisfaction: float = Field(0.25, ge=0)
    health_engagement: float = Field(0.15, ge=0)
    engagement_half_life_days: float = Field(30.0, gt=0)


DEFAULT_WEIGHTS = RuleWeights()


def model_version(weights: RuleWeights) -> str:
    """rules-v1 with the default weights; tuned weights get a fingerprint so scores stay traceable."""
    if weights == DEFAULT_WEIGHTS:
        return RULES_VERSION
    digest = hashlib.sha256(weights.model_dump_json().encode()).hexdigest()[:8]
    return f"{RULES_VERSION}+{digest}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _days(value: float) -> str:
    n = round(value)
    return "today" if n == 0 else f"{_plural(n, 'day')} ago"


def _top(factors: list[Factor]) -> list[Factor]:
    kept = [f for f in factors if f.contribution != 0]
    kept.sort(key=lambda f: (-abs(f.contribution), f.code))
    return kept[:TOP_FACTORS]


def _factor(code: str, label: str, contribution: float) -> Factor:
    return Factor(code=code, label=label, contribution=round(contribution, 3))


def churn_terms(state: FeatureState, now: datetime, weights: RuleWeights = DEFAULT_WEIGHTS) -> list[Factor]:
    """Every rule that fired, with its exact (unrounded-then-rounded) log-odds contribution."""
    w = weights
    terms: list[tuple[str, str, float]] = []

    # Recency against the customer's own rhythm.
    since = days_between(state.last_purchase_at, now)
    if since is not None:
        own_gap = state.avg_purchase_gap_days
        gap = max(own_gap if own_gap is not None else w.default_purchase_gap_days, w.min_purchase_gap_days)
        ratio = since / gap
        rhythm = f"usually every {round(gap)} days" if own_gap is not None else f"expected every {round(gap)} days"
        if ratio > 1:
            value = min(w.recency_per_gap * (ratio - 1), w.recency_cap)
            terms.append(("recency_drop", f"No purchase for {round(since)} days ({rhythm})", value))
        else:
            value = -w.recent_purchase * (1 - ratio)
            terms.append(("recent_purchase", f"Last purchase {_days(since)} ({rhythm})", value))

    # Complaints.
    last_30 = complaints_between(state, now, 30)
    earlier = complaints_between(state, now, 90, 30)
    if last_30:
        n = len(last_30)
        value = w.complaint_30d * min(n, w.complaints_counted)
        terms.append(("complaints_30d", f"{_plural(n, 'complaint')} in the last 30 days", value))
    if earlier:
        n = len(earlier)
        value = w.complaint_90d * min(n, w.complaints_counted)
        terms.append(("complaints_90d", f"{_plural(n, 'earlier complaint')} in the last 90 days", value))
    severe = [c for c in (*earlier, *last_30) if c.severe]
    if severe:
        n = len(severe)
        value = w.severe_complaint * min(n, w.per_kind_counted)
        terms.append(("severe_complaints", f"{_plural(n, 'severe complaint')} (high or critical) in 90 days", value))
    if state.open_complaints:
        n = state.open_complaints
        label = f"{_plural(n, 'complaint')} still open"
        terms.append(("open_complaints", label, w.open_complaint * min(n, w.per_kind_counted)))
    if state.overdue_complaints:
        n = state.overdue_complaints
        label = f"{_plural(n, 'complaint')} past the response deadline"
        terms.append(("overdue_complaints", label, w.overdue_complaint * min(n, w.per_kind_counted)))

    # Satisfaction.
    if state.last_nps is not None:
        nps = state.last_nps
        if nps <= 6:
            terms.append(("nps_detractor", f"Last NPS {nps} (detractor)", w.nps_detractor * (7 - nps) / 7))
        elif nps >= 9:
            terms.append(("nps_promoter", f"Last NPS {nps} (promoter)", -w.nps_promoter))
    if state.last_csat is not None:
        csat = state.last_csat
        if csat < 3:
            terms.append(("csat_low", f"Last CSAT {csat} of 5", w.csat_low_per_point * (3 - csat)))
        elif csat == 5:
            terms.append(("csat_top", "Last CSAT 5 of 5", -w.csat_top))
    if state.sentiment_ewma is not None:
        s = state.sentiment_ewma
        if s < 0:
            label = f"Negative tone in recent contacts ({s:+.2f})"
            terms.append(("sentiment_negative", label, -w.sentiment_negative * s))
        elif s > 0:
            label = f"Positive tone in recent contacts ({s:+.2f})"
            terms.append(("sentiment_positive", label, -w.sentiment_positive * s))

    # Falling spend.
    recent = spend_between(state, now, 90)
    before = spend_between(state, now, 180, 90)
    if before > 0:
        drop = 1 - recent / before
        if drop >= w.spend_drop_min:
            pct = round(min(drop, 1) * 100)
            terms.append(("spend_drop", f"Spend down {pct}% against the previous 90 days", w.spend_drop * min(drop, 1)))

    return [Factor(code=code, label=label, contribution=value) for code, label, value in terms]


def churn_risk(
    state: FeatureState, now: datetime, weights: RuleWeights = DEFAULT_WEIGHTS
) -> tuple[float, list[Factor]]:
    """Churn risk in 0..1 and its top factors (signed log-odds contributions, largest first)."""
    terms = churn_terms(state, now, weights)
    logit = weights.intercept + sum(t.contribution for t in terms)
    risk = 1 / (1 + math.exp(-logit))
    return risk, _top([_factor(t.code, t.label, t.contribution) for t in terms])


def health(
    state: FeatureState, risk: float, now: datetime, weights: RuleWeights = DEFAULT_WEIGHTS
) -> tuple[float, list[Factor]]:
    """Health 0..100 and its factors, in points above or below a neutral 50."""
    w = weights
    terms = [("staying", f"Churn risk {round(risk * 100)}%", 100 * w.health_staying * ((1 - risk) - 0.5))]

    parts: list[float] = []
    said: list[str] = []
    if state.last_nps is not None:
        parts.append(state.last_nps / 10)
        said.append(f"NPS {state.last_nps}")
    if state.last_csat is not None:
        parts.append((state.last_csat - 1) / 4)
        said.append(f"CSAT {state.last_csat} of 5")
    if parts:
        satisfaction = sum(parts) / len(parts)
        label = "Last " + ", ".join(said)
        terms.append(("satisfaction", label, 100 * w.health_satisfaction * (satisfaction - 0.5)))

    since_contact = days_between(state.last_contact_at, now)
    if since_contact is not None:
        engagement = 0.5 ** (since_contact / w.engagement_half_life_days)
        label = f"Last contact {_days(since_contact)}"
        terms.append(("engagement", label, 100 * w.health_engagement * (engagement - 0.5)))

    score = min(max(50 + sum(value for _, _, value in terms), 0.0), 100.0)
    return score, _top([_factor(code, label, value) for code, label, value in terms])
