"""The consent replica and touches (docs/consent.md): tables and API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Index
from sqlmodel import Field

from servicekit.pagination import Page
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    flag_field,
    json_field,
    new_id,
)


class ConsentReplica(RetentionTable, table=True):
    """Replica of consent.changed: the customer's consent per channel and contact preferences, latest version."""

    __tablename__ = "consent_replica"

    customer_id: str = Field(primary_key=True, max_length=100)
    version: int = 0
    channels: dict[str, str] = json_field(dict)  # channel -> opt_in | opt_out
    timezone: str | None = Field(default=None, max_length=64)
    cap_max_touches: int | None = None
    cap_window_days: float | None = None
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    updated_at: datetime = at_field()


class Touch(RetentionTable, table=True):
    """A playbook step that would contact the customer: allowed (its task exists) or blocked, with the reason.

    Ids and codes only; kept after the customer's erasure as an anonymous aggregate (like tasks)."""

    __tablename__ = "touches"
    __table_args__ = (
        Index("ix_touches_customer_created", "customer_id", "created_at"),
        Index("ix_touches_created_verdict", "created_at", "verdict"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100)
    alert_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)  # the task it became; null when blocked
    reason: str = Field(max_length=64)  # the alert reason (playbook) it came from
    action: str = Field(max_length=40)  # the step kind
    channel: str = Field(max_length=20)
    allowed: bool = flag_field(True)
    verdict: str = Field(max_length=30)  # allowed, or why it was blocked (contact_policy.Verdict)
    at: datetime = at_field()  # when the contact would happen (the task's due time)
    created_at: datetime = at_field()


class TouchPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    customer_id: str
    alert_id: str | None
    task_id: str | None
    reason: str
    action: str
    channel: str
    allowed: bool
    verdict: str
    at: UtcDatetime
    created_at: UtcDatetime


class TouchesPublic(Page[TouchPublic]):
    pass
