"""Alerts: the table, its change log (the SSE stream reads it), statuses, outcomes and API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Column, String, UniqueConstraint
from sqlmodel import Field

from contracts.common import Severity
from servicekit.pagination import Page
from servicekit.tables import BigIntId
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    flag_field,
    json_field,
    new_id,
)


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
SNOOZE_FROM = frozenset({AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed})
RESOLVE_FROM = frozenset({AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed})

# Lineage kept per alert: enough to explain it and to drop redelivered events, bounded in size.
EVENT_IDS_KEPT = 50


def open_slot(customer_id: str, reason: str) -> str:
    """The value whose uniqueness allows one unresolved alert per customer and reason."""
    return f"{customer_id}:{reason}"


class Alert(RetentionTable, table=True):
    __tablename__ = "alerts"
    # NULLs never collide in a UNIQUE constraint (PostgreSQL and SQLite alike), so resolved alerts,
    # whose open_slot is NULL, pile up freely while at most one unresolved alert holds each slot.
    __table_args__ = (UniqueConstraint("open_slot", name="uq_alerts_open_slot"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    reason: str = Field(max_length=64, index=True)
    rule_id: str | None = Field(default=None, max_length=64)
    severity: Severity = Field(sa_type=String(20), index=True)
    status: AlertStatus = Field(default=AlertStatus.open, sa_type=String(20), index=True)
    trigger_count: int = 1
    first_triggered_at: datetime = at_field()
    last_triggered_at: datetime = at_field()
    churn_risk: float | None = None
    # Time of the score churn_risk and value_at_risk come from; an older score never overwrites them.
    risk_as_of: datetime | None = at_field(nullable=True)
    value_at_risk: float | None = None
    owner: str | None = Field(default=None, max_length=100, index=True)
    tier: str | None = Field(default=None, max_length=20, index=True)
    segment: str | None = Field(default=None, max_length=100)
    # Held back by the playbook's control share: no tasks, so the playbook's effect can be measured.
    control: bool = flag_field(False)
    factors: list[dict[str, Any]] = json_field(list)
    event_ids: list[str] = json_field(list)
    acknowledged_at: datetime | None = at_field(nullable=True)
    snoozed_until: datetime | None = at_field(nullable=True, index=True)
    snooze_reason: str | None = Field(default=None, max_length=500)
    # Auto-save: below this churn risk since risk_below_since for long enough, the alert closes as saved.
    recover_below: float | None = None
    risk_below_since: datetime | None = at_field(nullable=True)
    outcome: Outcome | None = Field(default=None, sa_type=String(20))
    outcome_note: str | None = Field(default=None, max_length=2000)
    resolved_at: datetime | None = at_field(nullable=True)
    open_slot: str | None = Field(default=None, max_length=200)
    created_at: datetime = at_field()
    updated_at: datetime = at_field()


class AlertChange(RetentionTable, table=True):
    """Log of alert changes for the SSE stream: seq is the event id a reconnecting client resumes from."""

    __tablename__ = "alert_changes"

    seq: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    alert_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    at: datetime = at_field(index=True)
    data: dict[str, Any] = json_field(dict)


class FactorPublic(BaseModel):
    code: str
    label: str
    contribution: float


class AlertPublic(BaseModel):
    id: str
    customer_id: str
    reason: str
    rule_id: str | None
    severity: Severity
    status: AlertStatus
    trigger_count: int
    first_triggered_at: UtcDatetime
    last_triggered_at: UtcDatetime
    churn_risk: float | None
    value_at_risk: float | None
    priority: float | None
    owner: str | None
    tier: str | None
    segment: str | None
    control: bool
    factors: list[FactorPublic]
    event_ids: list[str]
    acknowledged_at: UtcDatetime | None
    snoozed_until: UtcDatetime | None
    snooze_reason: str | None
    outcome: Outcome | None
    outcome_note: str | None
    resolved_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        data = {name: getattr(alert, name) for name in cls.model_fields if name != "priority"}
        return cls.model_validate({**data, "priority": alert.value_at_risk})


class AlertsPublic(Page[AlertPublic]):
    """One page of alerts; total counts every alert matching the filters."""


class AlertAcknowledge(BaseModel):
    owner: str | None = PydanticField(default=None, min_length=1, max_length=100)


class AlertSnooze(BaseModel):
    until: UtcDatetime
    reason: str = PydanticField(min_length=1, max_length=500)


class AlertResolve(BaseModel):
    outcome: Outcome
    note: str | None = PydanticField(default=None, max_length=2000)
