"""Customer features, scores, tier changes and purchases: tables and API shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Boolean, Column, Date, Float, Index, String
from sqlmodel import Field

from contracts.customer import VALUE_TIERS
from contracts.scoring import Factor
from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.tables import BigIntId
from servicekit.types import UtcDateTime
from services.scoring.common import ScoringTable, json_column, ts_column


class CustomerFeatures(ScoringTable, table=True):
    """One customer's feature state, built from events (see services.scoring.scores.features.FeatureState)."""

    __tablename__ = "customer_features"

    customer_id: str = Field(primary_key=True, max_length=64)
    status: str | None = Field(default=None, sa_type=String(20))
    segment: str | None = Field(default=None, max_length=100, index=True)
    owner: str | None = Field(default=None, max_length=100, index=True)
    attributes: dict[str, Any] = json_column(dict)
    customer_version: int = 0
    consent: dict[str, Any] = json_column(dict)  # channel -> opt_in / opt_out, from consent.changed
    consent_version: int = 0
    churned_at: datetime | None = ts_column()

    purchases: int = 0
    total_spend: float = Field(default=0.0, sa_type=Float)
    first_purchase_at: datetime | None = ts_column()
    last_purchase_at: datetime | None = ts_column()
    recent_purchases: list[Any] = json_column(list)  # [[iso time, amount]], last 180 days
    purchase_days: dict[str, Any] = json_column(dict)  # iso date -> spend that day, whole history
    returns: int = 0
    last_return_at: datetime | None = ts_column()
    contacts: int = 0
    referrals: int = 0
    referral_amount: float = Field(default=0.0, sa_type=Float)
    referrals_with_amount: int = 0
    wallet_estimate: float | None = Field(default=None, sa_type=Float)

    complaints_total: int = 0
    recent_complaints: list[Any] = json_column(list)  # [[id, iso time, severity]], last 90 days
    open_complaint_ids: dict[str, Any] = json_column(dict)  # id -> severity
    overdue_complaint_ids: list[str] = json_column(list)
    closed_complaint_ids: list[str] = json_column(list)  # bounded; makes a duplicate close a no-op
    open_complaints: int = Field(default=0, index=True)
    overdue_complaints: int = 0

    last_nps: int | None = None
    last_nps_at: datetime | None = ts_column()
    nps_count: int = 0
    nps_sum: int = 0
    last_csat: int | None = None
    last_csat_at: datetime | None = ts_column()
    csat_count: int = 0
    csat_sum: int = 0
    sentiment_ewma: float | None = Field(default=None, sa_type=Float)
    sentiment_count: int = 0

    last_contact_at: datetime | None = ts_column()
    first_seen_at: datetime | None = ts_column()
    last_event_at: datetime | None = ts_column()
    seen_ids: list[str] = json_column(list)  # bounded; de-duplicates re-sent interactions
    erased: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))
    # The time the silent-customer sweep last scored this customer at, whether or not the score had
    # moved enough to publish; with the current score's as_of it says when the customer is due again.
    swept_at: datetime | None = ts_column()


class ScoreRecord(ScoringTable, table=True):
    """Score history: one row per rescoring, with the event that caused it."""

    __tablename__ = "scores"
    __table_args__ = (Index("ix_scores_customer_id_id", "customer_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    customer_id: str = Field(max_length=64)
    churn_risk: float = Field(sa_type=Float)
    health: float = Field(sa_type=Float)
    factors: dict[str, Any] = json_column(dict)  # {"churn_risk": [Factor...], "health": [Factor...]}
    model_version: str = Field(max_length=50)
    # Value (None until a value model is active or before the first purchase) and lifecycle stage.
    value_tier: str | None = Field(default=None, sa_type=String(10), index=False)
    lifecycle_stage: str | None = Field(default=None, sa_type=String(20), index=False)
    p_alive: float | None = Field(default=None, sa_type=Float)
    expected_purchases: float | None = Field(default=None, sa_type=Float)
    clv: float | None = Field(default=None, sa_type=Float)
    value_at_risk: float | None = Field(default=None, sa_type=Float, index=False)  # clv * churn_risk
    value_model_version: str | None = Field(default=None, max_length=50)
    caused_by: str = Field(max_length=200)  # the event id
    caused_by_type: str = Field(max_length=100)
    as_of: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))  # event time used as "now"
    # The model features as they stood at as_of: what churn training reads, so it sees no later event.
    snapshot: dict[str, Any] = json_column(dict)
    computed_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))


class CurrentScore(ScoringTable, table=True):
    """The latest score per customer, for single reads and ranked lists."""

    __tablename__ = "current_scores"

    customer_id: str = Field(primary_key=True, max_length=64)
    churn_risk: float = Field(sa_type=Float, index=True)
    health: float = Field(sa_type=Float, index=True)
    factors: dict[str, Any] = json_column(dict)
    model_version: str = Field(max_length=50)
    # Value (None until a value model is active or before the first purchase) and lifecycle stage.
    value_tier: str | None = Field(default=None, sa_type=String(10), index=True)
    lifecycle_stage: str | None = Field(default=None, sa_type=String(20), index=True)
    p_alive: float | None = Field(default=None, sa_type=Float)
    expected_purchases: float | None = Field(default=None, sa_type=Float)
    clv: float | None = Field(default=None, sa_type=Float)
    value_at_risk: float | None = Field(default=None, sa_type=Float, index=True)  # clv * churn_risk
    value_model_version: str | None = Field(default=None, max_length=50)
    score_id: int = Field(sa_type=BigIntId)
    caused_by: str = Field(max_length=200)
    caused_by_type: str = Field(max_length=100)
    as_of: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    computed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Purchase(ScoringTable, table=True):
    """Purchase history for the value-model refit: one row per purchase interaction (deduplicated by id)."""

    __tablename__ = "purchases"
    __table_args__ = (Index("ix_purchases_customer_id_day", "customer_id", "day"),)

    interaction_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(max_length=64)
    day: date = Field(sa_column=Column(Date, nullable=False, index=True))  # UTC date of occurred_at
    amount: float = Field(default=0.0, sa_type=Float)


class TierChange(ScoringTable, table=True):
    """A customer's value tier from ``as_of`` on: written with the score history whenever a rescoring gives
    another tier than the customer's current one (and at its first score), so the tier at any moment is
    that of the latest change before it, read from far fewer rows than the score history."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_customer_id_id", "customer_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    customer_id: str = Field(max_length=64)
    tier: str | None = Field(default=None, sa_type=String(10))
    as_of: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


# ---- API shapes ----------------------------------------------------------------------------------


class ScoreFactors(BaseModel):
    churn_risk: list[Factor] = []
    health: list[Factor] = []


class ScorePublic(BaseModel):
    churn_risk: float
    health: float
    factors: ScoreFactors
    model_version: str  # of the churn score: rules-v1 or a trained churn model's id
    value_tier: str | None = None  # platinum | gold | iron | lead, by CLV (needs an active value model)
    lifecycle_stage: str | None = None  # exploration | formation | stability | decline
    p_alive: float | None = None
    expected_purchases: float | None = None  # over the value model's CLV horizon
    clv: float | None = None
    value_at_risk: float | None = None  # clv x churn_risk
    value_model_version: str | None = None
    caused_by: str
    caused_by_type: str
    as_of: datetime
    computed_at: datetime


class ScoreHistoryItem(ScorePublic):
    id: int


class FeatureSummary(BaseModel):
    status: str | None = None
    segment: str | None = None
    purchases: int
    total_spend: float
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    days_since_last_purchase: float | None = None
    avg_days_between_purchases: float | None = None
    spend_last_90d: float
    returns: int
    complaints_total: int
    complaints_30d: int
    complaints_90d: int
    open_complaints: int
    overdue_complaints: int
    last_nps: int | None = None
    avg_nps: float | None = None
    last_csat: int | None = None
    avg_csat: float | None = None
    sentiment: float | None = None
    last_contact_at: datetime | None = None


class CustomerScoresPublic(BaseModel):
    customer_id: str
    scores: ScorePublic | None  # None until an event about the customer has been scored
    features: FeatureSummary
    features_as_of: datetime | None


class _HistoryOf(BaseModel):
    customer_id: str


# The page's fields follow the customer's id (base classes' fields come in reverse order of the bases),
# so the document and the answers keep the order they always had.
class ScoreHistoryPublic(Page[ScoreHistoryItem], _HistoryOf):
    pass


class RankedScore(BaseModel):
    customer_id: str
    churn_risk: float
    health: float
    value_tier: str | None = None
    lifecycle_stage: str | None = None
    p_alive: float | None = None
    clv: float | None = None
    value_at_risk: float | None = None
    segment: str | None
    status: str | None
    top_factors: list[Factor]
    model_version: str
    computed_at: datetime


class RankedScoresPublic(Page[RankedScore]):
    pass


class TierShare(BaseModel):
    tier: Literal[VALUE_TIERS] | None  # type: ignore[valid-type]  # None: no value model or no purchase yet
    customers: int
    value: float  # the tier's summed CLV
    value_share: float  # its share of all customers' CLV, 0..1


class StageCount(BaseModel):
    stage: Literal["exploration", "formation", "stability", "decline"] | None
    customers: int


class RiskBucket(BaseModel):
    low: float  # churn risk from (inclusive) ...
    high: float  # ... to (exclusive; the last bucket includes 1.0)
    customers: int


class ScoreSummaryPublic(BaseModel):
    """Aggregates over every customer's current score: no customer is listed."""

    customers: int
    tiers: list[TierShare]  # platinum first, then gold, iron, lead, then unvalued
    stages: list[StageCount]  # in lifecycle order, then unknown
    risk: list[RiskBucket]  # ten buckets of width 0.1


class PurchaseHistoryPublic(BaseModel):
    """What a value refit would read: purchases held for (a segment's) customers."""

    customers: int
    purchases: int
    purchase_days: int
    first_day: date | None
    last_day: date | None
