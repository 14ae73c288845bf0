"""Sequence enrolments (docs/sequences.md): the table and API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field

from servicekit.pagination import Page
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    json_field,
    new_id,
)


class EnrolmentStatus(StrEnum):
    active = "active"
    completed = "completed"
    stopped = "stopped"


class Enrolment(RetentionTable, table=True):
    """A customer in a playbook's sequence. Its next step is the timer `due_at` (null once finished), claimed
    by the engine (sequence_engine.py) in the transaction that runs the step; `version` guards against two
    engines running the same step. The definition is a copy taken at enrolment: editing the playbook
    changes new enrolments only."""

    __tablename__ = "enrolments"
    __table_args__ = (
        Index("ix_enrolments_due", "due_at"),
        Index("ix_enrolments_customer", "customer_id", "started_at"),
        UniqueConstraint("active_slot", name="uq_enrolments_active_slot"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100)
    alert_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(max_length=64)
    tier: str | None = Field(default=None, max_length=20)
    owner: str | None = Field(default=None, max_length=100)
    definition: dict[str, Any] = json_field(dict)
    status: EnrolmentStatus = Field(default=EnrolmentStatus.active, sa_type=String(20))
    stop_reason: str | None = Field(default=None, max_length=100)
    cursor: int = 0
    waiting_since: datetime | None = at_field(nullable=True)
    wait_began: datetime | None = at_field(nullable=True)
    last_task_id: str | None = Field(default=None, max_length=36)
    due_at: datetime | None = at_field(nullable=True)
    version: int = 0
    steps_run: int = 0
    trail: list[dict[str, Any]] = json_field(list)  # the last steps passed: id, kind, at, result
    # A campaign's run: its touch steps send the campaign's offer (campaign id, offer, channel, template,
    # valid_until), copied at launch; null for a playbook's enrolment.
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    active_slot: str | None = Field(default=None, max_length=200)  # customer:reason while active
    started_at: datetime = at_field()
    finished_at: datetime | None = at_field(nullable=True)
    updated_at: datetime = at_field()


class EnrolmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    alert_id: str | None
    reason: str
    tier: str | None
    status: EnrolmentStatus
    stop_reason: str | None
    cursor: int
    due_at: UtcDatetime | None
    steps_run: int
    trail: list[dict[str, Any]]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None


class EnrolmentsPublic(Page[EnrolmentPublic]):
    pass


class EnrolmentStop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = PydanticField(default="manual", min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")
