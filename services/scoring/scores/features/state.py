"""A customer's feature state, the windows over it and the summary shown beside a score. Pure: no I/O, no clock.

Every time in the state is the time of the event that set it (the producer's business time), never the
wall clock, so replaying the same events in the same order rebuilds exactly the same state and scores.
How each event changes the state is in ``events``; its storage form in ``storage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.common import SEVERE

# How far back the windowed features reach; older marks are pruned so the JSON columns stay small.
COMPLAINT_WINDOW = timedelta(days=90)
PURCHASE_WINDOW = timedelta(days=180)


def utc(value: datetime) -> datetime:
    """Aware UTC datetime (SQLite hands back naive datetimes; those are UTC by convention here)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class ComplaintMark:
    """One complaint inside the 90-day window."""

    id: str
    at: datetime
    severity: str | None = None

    @property
    def severe(self) -> bool:
        return self.severity in SEVERE


@dataclass
class PurchaseMark:
    at: datetime
    amount: float


@dataclass
class FeatureState:
    customer_id: str
    # From crm.customer.v1.
    status: str | None = None
    segment: str | None = None
    owner: str | None = None  # the account manager (report and segment filters)
    attributes: dict[str, Any] = field(default_factory=dict)
    customer_version: int = 0
    # From consent.changed: each recorded channel's status (opt_in / opt_out), and the consent version held.
    consent: dict[str, str] = field(default_factory=dict)
    consent_version: int = 0
    churned_at: datetime | None = None  # when the status last became churned (the training label's date)
    # Purchases: enough for recency, the customer's own rhythm and (later) BG/NBD and Gamma-Gamma.
    purchases: int = 0
    total_spend: float = 0.0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    recent_purchases: list[PurchaseMark] = field(default_factory=list)
    # Spend per purchase day (UTC ISO date -> amount), the whole history: BG/NBD counts purchase days,
    # Gamma-Gamma averages repeat-day spend, and the lifecycle stage compares half-years.
    purchase_days: dict[str, float] = field(default_factory=dict)
    returns: int = 0
    last_return_at: datetime | None = None
    # Value counters (services.scoring.value.measures): service contacts (calls, e-mails, chats, visits, tickets,
    # feedback) for the cost to serve, referrals (interactions in category "referral") and the ERP's
    # wallet estimate (the customer attribute "wallet_estimate").
    contacts: int = 0
    referrals: int = 0
    referral_amount: float = 0.0
    referrals_with_amount: int = 0
    wallet_estimate: float | None = None
    # Complaints. A complaint's id is the id of the interaction that recorded it (as the interaction
    # service publishes it), so interaction.recorded and complaint.updated/overdue name the same thing.
    complaints_total: int = 0
    recent_complaints: list[ComplaintMark] = field(default_factory=list)
    open_complaint_ids: dict[str, str | None] = field(default_factory=dict)  # id -> severity
    overdue_complaint_ids: set[str] = field(default_factory=set)
    closed_complaint_ids: list[str] = field(default_factory=list)
    # Satisfaction.
    last_nps: int | None = None
    last_nps_at: datetime | None = None
    nps_count: int = 0
    nps_sum: int = 0
    last_csat: int | None = None
    last_csat_at: datetime | None = None
    csat_count: int = 0
    csat_sum: int = 0
    sentiment_ewma: float | None = None
    sentiment_count: int = 0
    # Contact and bookkeeping.
    last_contact_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_event_at: datetime | None = None
    seen_ids: list[str] = field(default_factory=list)
    erased: bool = False

    @property
    def open_complaints(self) -> int:
        return len(self.open_complaint_ids)

    @property
    def overdue_complaints(self) -> int:
        return len(self.overdue_complaint_ids)

    @property
    def avg_nps(self) -> float | None:
        return self.nps_sum / self.nps_count if self.nps_count else None

    @property
    def avg_csat(self) -> float | None:
        return self.csat_sum / self.csat_count if self.csat_count else None

    @property
    def avg_purchase_gap_days(self) -> float | None:
        """The customer's own rhythm: mean days between purchases (needs two purchases)."""
        if self.purchases < 2 or self.first_purchase_at is None or self.last_purchase_at is None:
            return None
        span = (self.last_purchase_at - self.first_purchase_at).total_seconds() / 86400
        return span / (self.purchases - 1)

    def as_of(self, at: datetime) -> datetime:
        """The "now" for windows after an event at `at`: the latest event time seen, so a late event
        never moves the clock backwards and a replay computes the same windows."""
        at = utc(at)
        return max(at, self.last_event_at) if self.last_event_at else at


def complaints_between(
    state: FeatureState, now: datetime, newer_than_days: float, older_than_days: float = 0
) -> list[ComplaintMark]:
    """Complaints with now - newer_than_days < at <= now - older_than_days."""
    start = now - timedelta(days=newer_than_days)
    end = now - timedelta(days=older_than_days)
    return [c for c in state.recent_complaints if start < c.at <= end]


def spend_between(state: FeatureState, now: datetime, newer_than_days: float, older_than_days: float = 0) -> float:
    start = now - timedelta(days=newer_than_days)
    end = now - timedelta(days=older_than_days)
    return sum(p.amount for p in state.recent_purchases if start < p.at <= end)


def days_between(earlier: datetime | None, now: datetime) -> float | None:
    if earlier is None:
        return None
    return max((now - earlier).total_seconds() / 86400, 0.0)


def summary(state: FeatureState, now: datetime) -> dict[str, Any]:
    """The features a person reading a score wants to see beside it."""
    last_purchase_days = days_between(state.last_purchase_at, now)
    gap = state.avg_purchase_gap_days
    return {
        "status": state.status,
        "segment": state.segment,
        "purchases": state.purchases,
        "total_spend": round(state.total_spend, 2),
        "first_purchase_at": state.first_purchase_at,
        "last_purchase_at": state.last_purchase_at,
        "days_since_last_purchase": None if last_purchase_days is None else round(last_purchase_days, 1),
        "avg_days_between_purchases": None if gap is None else round(gap, 1),
        "spend_last_90d": round(spend_between(state, now, 90), 2),
        "returns": state.returns,
        "complaints_total": state.complaints_total,
        "complaints_30d": len(complaints_between(state, now, 30)),
        "complaints_90d": len(complaints_between(state, now, 90)),
        "open_complaints": state.open_complaints,
        "overdue_complaints": state.overdue_complaints,
        "last_nps": state.last_nps,
        "avg_nps": None if state.avg_nps is None else round(state.avg_nps, 2),
        "last_csat": state.last_csat,
        "avg_csat": None if state.avg_csat is None else round(state.avg_csat, 2),
        "sentiment": None if state.sentiment_ewma is None else round(state.sentiment_ewma, 3),
        "last_contact_at": state.last_contact_at,
    }
