"""Retention tables and API shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, String, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.events.contracts.common import Severity
from servicekit.tables import add_plumbing_tables


class RetentionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = RetentionTable.metadata
add_plumbing_tables(metadata)


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    snoozed = "snoozed"
    resolved = "resolved"


class Outcome(StrEnum):
    saved = "saved"
    churned = "churned"
    false_alarm = "false_alarm"


# Which statuses each action may start from; resolved is terminal (a new trigger opens a new alert).
ACKNOWLEDGE_FROM = frozenset({AlertStatus.open, AlertStatus.snoozed})
RESOLVE_FROM = frozenset({AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed})

# Lineage kept per alert: enough to explain it and to drop redelivered events, bounded in size.
EVENT_IDS_KEPT = 50


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def open_slot(customer_id: str, reason: str) -> str:
    """The value whose uniqueness allows one unresolved alert per customer and reason."""
    return f"{customer_id}:{reason}"


def _tz(*, nullable: bool = False) -> Any:
    column = Column(DateTime(timezone=True), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


class Alert(RetentionTable, table=True):
    __tablename__ = "alerts"
    # NULLs never collide in a UNIQUE constraint (PostgreSQL and SQLite alike), so resolved alerts,
    # whose open_slot is NULL, pile up freely while at most one unresolved alert holds each slot.
    __table_args__ = (UniqueConstraint("open_slot", name="uq_alerts_open_slot"),)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    reason: str = Field(max_length=64, index=True)
    severity: Severity = Field(sa_type=String(20))
    status: AlertStatus = Field(default=AlertStatus.open, sa_type=String(20), index=True)
    trigger_count: int = 1
    first_triggered_at: datetime = _tz()
    last_triggered_at: datetime = _tz()
    churn_risk: float | None = None
    # Time of the score churn_risk and value_at_risk come from; an older score never overwrites them.
    risk_as_of: datetime | None = _tz(nullable=True)
    value_at_risk: float | None = None
    owner: str | None = Field(default=None, max_length=100, index=True)
    factors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    event_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    acknowledged_at: datetime | None = _tz(nullable=True)
    snoozed_until: datetime | None = _tz(nullable=True)
    outcome: Outcome | None = Field(default=None, sa_type=String(20))
    outcome_note: str | None = Field(default=None, max_length=2000)
    resolved_at: datetime | None = _tz(nullable=True)
    open_slot: str | None = Field(default=None, max_length=200)
    created_at: datetime = _tz()
    updated_at: datetime = _tz()


class CustomerScore(RetentionTable, table=True):
    """The latest score of each customer, from score.updated: lets any new alert carry its value at risk.

    Complaints and scores arrive on different topics in no mutual order, so an alert raised by a
    complaint cannot wait for "the" score; it takes the latest one known here.
    """

    __tablename__ = "customer_scores"

    customer_id: str = Field(primary_key=True, max_length=100)
    churn_risk: float
    clv: float | None = None
    value_at_risk: float | None = None
    value_tier: str | None = Field(default=None, max_length=20)
    as_of: datetime = _tz()
    updated_at: datetime = _tz()


# ---- API shapes ----------------------------------------------------------------------------------

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class FactorPublic(BaseModel):
    code: str
    label: str
    contribution: float


class AlertPublic(BaseModel):
    id: str
    customer_id: str
    reason: str
    severity: Severity
    status: AlertStatus
    trigger_count: int
    first_triggered_at: UtcDatetime
    last_triggered_at: UtcDatetime
    churn_risk: float | None
    value_at_risk: float | None
    owner: str | None
    factors: list[FactorPublic]
    event_ids: list[str]
    acknowledged_at: UtcDatetime | None
    snoozed_until: UtcDatetime | None
    outcome: Outcome | None
    outcome_note: str | None
    resolved_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        return cls.model_validate(alert, from_attributes=True)


class AlertsPublic(BaseModel):
    """One page of alerts; total counts every alert matching the filters."""

    items: list[AlertPublic]
    total: int
    limit: int
    offset: int


class AlertAcknowledge(BaseModel):
    owner: str | None = PydanticField(default=None, min_length=1, max_length=100)


class AlertResolve(BaseModel):
    outcome: Outcome
    note: str | None = PydanticField(default=None, max_length=2000)
