"""Scoring tables and API shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Boolean, Column, Date, Float, Index, LargeBinary, String, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.events.contracts.scoring import Factor
from servicekit.tables import BigIntId, add_plumbing_tables
from servicekit.types import UtcDateTime


class ScoringTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = ScoringTable.metadata
add_plumbing_tables(metadata)


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class CustomerFeatures(ScoringTable, table=True):
    """One customer's feature state, built from events (see services.scoring.features.FeatureState)."""

    __tablename__ = "customer_features"

    customer_id: str = Field(primary_key=True, max_length=64)
    status: str | None = Field(default=None, sa_type=String(20))
    segment: str | None = Field(default=None, max_length=100, index=True)
    attributes: dict[str, Any] = _json(dict)
    customer_version: int = 0
    churned_at: datetime | None = _ts()

    purchases: int = 0
    total_spend: float = Field(default=0.0, sa_type=Float)
    first_purchase_at: datetime | None = _ts()
    last_purchase_at: datetime | None = _ts()
    recent_purchases: list[Any] = _json(list)  # [[iso time, amount]], last 180 days
    purchase_days: dict[str, Any] = _json(dict)  # iso date -> spend that day, whole history
    returns: int = 0
    last_return_at: datetime | None = _ts()
    contacts: int = 0
    referrals: int = 0
    referral_amount: float = Field(default=0.0, sa_type=Float)
    referrals_with_amount: int = 0
    wallet_estimate: float | None = Field(default=None, sa_type=Float)

    complaints_total: int = 0
    recent_complaints: list[Any] = _json(list)  # [[id, iso time, severity]], last 90 days
    open_complaint_ids: dict[str, Any] = _json(dict)  # id -> severity
    overdue_complaint_ids: list[str] = _json(list)
    closed_complaint_ids: list[str] = _json(list)  # bounded; makes a duplicate close a no-op
    open_complaints: int = Field(default=0, index=True)
    overdue_complaints: int = 0

    last_nps: int | None = None
    last_nps_at: datetime | None = _ts()
    nps_count: int = 0
    nps_sum: int = 0
    last_csat: int | None = None
    last_csat_at: datetime | None = _ts()
    csat_count: int = 0
    csat_sum: int = 0
    sentiment_ewma: float | None = Field(default=None, sa_type=Float)
    sentiment_count: int = 0

    last_contact_at: datetime | None = _ts()
    first_seen_at: datetime | None = _ts()
    last_event_at: datetime | None = _ts()
    seen_ids: list[str] = _json(list)  # bounded; de-duplicates re-sent interactions
    erased: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    updated_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))
    # The time the silent-customer sweep last scored this customer at, whether or not the score had
    # moved enough to publish; with the current score's as_of it says when the customer is due again.
    swept_at: datetime | None = _ts()


class ScoreRecord(ScoringTable, table=True):
    """Score history: one row per rescoring, with the event that caused it."""

    __tablename__ = "scores"
    __table_args__ = (Index("ix_scores_customer_id_id", "customer_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    customer_id: str = Field(max_length=64)
    churn_risk: float = Field(sa_type=Float)
    health: float = Field(sa_type=Float)
    factors: dict[str, Any] = _json(dict)  # {"churn_risk": [Factor...], "health": [Factor...]}
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
    snapshot: dict[str, Any] = _json(dict)
    computed_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))


class CurrentScore(ScoringTable, table=True):
    """The latest score per customer, for single reads and ranked lists."""

    __tablename__ = "current_scores"

    customer_id: str = Field(primary_key=True, max_length=64)
    churn_risk: float = Field(sa_type=Float, index=True)
    health: float = Field(sa_type=Float, index=True)
    factors: dict[str, Any] = _json(dict)
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


class ValueModelVersion(ScoringTable, table=True):
    """A fitted BG/NBD + Gamma-Gamma version; exactly one is active once a refit has run."""

    __tablename__ = "value_models"

    id: str = Field(primary_key=True, max_length=50)
    params: dict[str, Any] = _json(dict)  # see services.scoring.value.ValueModel.params_json
    metrics: dict[str, Any] = _json(dict)
    n_customers: int = 0
    calibration_end: date = Field(sa_column=Column(Date, nullable=False))
    fitted_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))
    job_id: str | None = Field(default=None, max_length=50)
    active: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False, index=True))


class ChurnModelVersion(ScoringTable, table=True):
    """A trained churn classifier version (joblib bytes); while one is active it replaces the rules."""

    __tablename__ = "churn_models"

    id: str = Field(primary_key=True, max_length=50)
    algorithm: str = Field(max_length=50)
    params: dict[str, Any] = _json(dict)  # feature lists, cutoff, settings of the run
    metrics: dict[str, Any] = _json(dict)
    n_samples: int = 0
    n_churned: int = 0
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    fitted_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))
    job_id: str | None = Field(default=None, max_length=50)
    active: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False, index=True))


class Job(ScoringTable, table=True):
    """A background job (value refit, churn training): committed as queued, claimed by a worker."""

    __tablename__ = "jobs"
    # One running job per kind, enforced by the database: a second worker's claim fails, whatever the race.
    __table_args__ = (
        Index(
            "uq_jobs_running_kind",
            "kind",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=50)
    kind: str = Field(sa_type=String(20))  # value_refit | churn_train
    status: str = Field(default="queued", sa_type=String(20), index=True)  # queued|running|succeeded|failed
    progress: float = Field(default=0.0, sa_type=Float)
    message: str | None = Field(default=None, max_length=2000)
    request: dict[str, Any] = _json(dict)
    result: dict[str, Any] = _json(dict)
    worker: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))
    started_at: datetime | None = _ts()
    heartbeat_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


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


class SavedSegment(ScoringTable, table=True):
    """A saved filter over scores, value, RFM, tier, stage and profile fields (services.scoring.segment_filter)."""

    __tablename__ = "segments"

    id: str = Field(primary_key=True, max_length=50)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    conditions: list[Any] = _json(list)
    created_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=_now, sa_column=Column(UtcDateTime(), nullable=False))


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


class ScoreHistoryPublic(BaseModel):
    customer_id: str
    items: list[ScoreHistoryItem]
    total: int
    limit: int
    offset: int


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


class RankedScoresPublic(BaseModel):
    items: list[RankedScore]
    total: int
    limit: int
    offset: int


class TierShare(BaseModel):
    tier: Literal["platinum", "gold", "iron", "lead"] | None  # None: no value model or no purchase yet
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


class ValueRefitRequest(BaseModel):
    calibration_end: date | None = None  # default: the latest purchase day held
    segment: str | None = PydanticField(None, max_length=100)  # fit on one segment's customers only
    rescore: bool = True  # apply the new model to every customer at once (else on their next event)


class ChurnTrainRequest(BaseModel):
    cutoff: datetime | None = None  # active customers are described as of this time (default: now)
    algorithm: Literal["logistic", "gbm"] = "logistic"
    folds: int = PydanticField(5, ge=2, le=10)
    activate: bool = True


class JobPublic(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    message: str | None
    request: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelVersionPublic(BaseModel):
    id: str
    kind: str  # value | churn
    active: bool
    fitted_at: datetime
    algorithm: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    n_customers: int
    calibration_end: date | None = None
    job_id: str | None = None


class ModelVersionsPublic(BaseModel):
    items: list[ModelVersionPublic]
    total: int
    limit: int
    offset: int


class PurchaseHistoryPublic(BaseModel):
    """What a value refit would read: purchases held for (a segment's) customers."""

    customers: int
    purchases: int
    purchase_days: int
    first_day: date | None
    last_day: date | None
