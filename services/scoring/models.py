"""Scoring tables and API shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.events.contracts.scoring import Factor
from servicekit.tables import BigIntId, add_plumbing_tables


class ScoringTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = ScoringTable.metadata
add_plumbing_tables(metadata)


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


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

    purchases: int = 0
    total_spend: float = Field(default=0.0, sa_type=Float)
    first_purchase_at: datetime | None = _ts()
    last_purchase_at: datetime | None = _ts()
    recent_purchases: list[Any] = _json(list)  # [[iso time, amount]], last 180 days
    returns: int = 0
    last_return_at: datetime | None = _ts()

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
    updated_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))


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
    caused_by: str = Field(max_length=200)  # the event id
    caused_by_type: str = Field(max_length=100)
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))  # event time used as "now"
    computed_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))


class CurrentScore(ScoringTable, table=True):
    """The latest score per customer, for single reads and ranked lists."""

    __tablename__ = "current_scores"

    customer_id: str = Field(primary_key=True, max_length=64)
    churn_risk: float = Field(sa_type=Float, index=True)
    health: float = Field(sa_type=Float, index=True)
    factors: dict[str, Any] = _json(dict)
    model_version: str = Field(max_length=50)
    score_id: int = Field(sa_type=BigIntId)
    caused_by: str = Field(max_length=200)
    caused_by_type: str = Field(max_length=100)
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    computed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# ---- API shapes ----------------------------------------------------------------------------------


class ScoreFactors(BaseModel):
    churn_risk: list[Factor] = []
    health: list[Factor] = []


class ScorePublic(BaseModel):
    churn_risk: float
    health: float
    factors: ScoreFactors
    model_version: str
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
