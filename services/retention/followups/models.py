"""Follow-up schedules per value tier, and each customer's next follow-up (a persisted timer)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StrictFloat, WithJsonSchema, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import Column, Index
from sqlmodel import Field

from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.retention.db import RetentionTable, UtcDatetime
from services.retention.playbooks.core import Action

# What a follow-up may be: a visit or a call by the account manager (a task), or a survey link (a touch).
FOLLOWUP_ACTIONS = (Action.follow_up_visit, Action.call_owner, Action.executive_outreach, Action.satisfaction_survey)


class FollowupSchedule(RetentionTable, table=True):
    __tablename__ = "followup_schedules"

    tier: str = Field(primary_key=True, max_length=20)
    every_days: float
    action: str = Field(max_length=40)
    due_in_hours: float = 72.0  # a task's due time after it is created
    survey: str | None = Field(default=None, max_length=10)  # a survey link's question; none: the configured one
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))


class FollowupDue(RetentionTable, table=True):
    """A customer's next scheduled follow-up; claimed by the follow-up loop like a sequence timer."""

    __tablename__ = "followup_due"
    __table_args__ = (Index("ix_followup_due_next", "next_due_at"),)

    customer_id: str = Field(primary_key=True, max_length=100)
    tier: str = Field(max_length=20)
    next_due_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_result: str | None = Field(default=None, max_length=30)  # created, sent, or the block reason
    version: int = 0


# A follow-up's action: one of the follow-up actions (an enum in the API; the service refuses any other).
FollowupAction = Annotated[Action, WithJsonSchema({"type": "string", "enum": [a.value for a in FOLLOWUP_ACTIONS]})]
SurveyKind = Literal["nps", "csat"]
SURVEY_DESCRIPTION = "satisfaction_survey only: nps (0-10) or csat (1-5); default the configured RETENTION_SURVEY_KIND"


def _survey_only_for_surveys(action: Action, survey: str | None) -> None:
    if survey is not None and action is not Action.satisfaction_survey:
        raise ValueError("survey: only a satisfaction_survey follow-up asks a survey question")


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every_days: float = PydanticField(gt=0, le=366, description="a follow-up this often per customer of the tier")
    action: FollowupAction = PydanticField(
        description="follow_up_visit, call_owner, executive_outreach (tasks for the owner) or satisfaction_survey"
    )
    due_in_hours: StrictFloat = PydanticField(72.0, gt=0, le=24 * 60, description="a task's due time after creation")
    survey: SurveyKind | None = PydanticField(None, description=SURVEY_DESCRIPTION)

    @model_validator(mode="after")
    def _survey(self) -> ScheduleBody:
        _survey_only_for_surveys(self.action, self.survey)
        return self


class SchedulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tier: str
    every_days: float
    action: str
    due_in_hours: float
    survey: str | None = None
    updated_at: UtcDatetime


class SchedulesPublic(Page[SchedulePublic]):
    pass


# ---- follow-ups triggered by an event -------------------------------------------------------------------


class Trigger(StrEnum):
    """The events after which a tier's customers get a follow-up."""

    complaint_resolved = "complaint_resolved"  # complaint.updated to resolved
    won_back = "won_back"  # customer.status_changed from churned back to won_back or active


class FollowupTrigger(RetentionTable, table=True):
    """A tier's follow-up after an event: what it is and how long after the event it falls due."""

    __tablename__ = "followup_triggers"

    tier: str = Field(primary_key=True, max_length=20)
    trigger: str = Field(primary_key=True, max_length=30)
    action: str = Field(max_length=40)
    delay_hours: float = 24.0  # after the event
    due_in_hours: float = 72.0  # a task's due time after it is created
    survey: str | None = Field(default=None, max_length=10)  # a survey link's question; none: the configured one
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))


class FollowupPending(RetentionTable, table=True):
    """One follow-up per triggering event (its key: the complaint, or the status change), a persisted timer
    claimed by the follow-up loop. It stays after it fired, with its result, so a repeated event adds none."""

    __tablename__ = "followup_pending"
    __table_args__ = (
        Index("ix_followup_pending_due", "status", "due_at"),
        Index("ix_followup_pending_customer", "customer_id"),
    )

    key: str = Field(primary_key=True, max_length=200)  # <trigger>:<complaint id or status-change event id>
    customer_id: str = Field(max_length=100)
    trigger: str = Field(max_length=30)
    tier: str = Field(max_length=20)
    action: str = Field(max_length=40)
    due_in_hours: float = 72.0
    survey: str | None = Field(default=None, max_length=10)
    due_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(default="pending", max_length=20)  # pending, created, sent, blocked, dropped
    version: int = 0
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))
    fired_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: FollowupAction = PydanticField(
        description="follow_up_visit, call_owner, executive_outreach (tasks for the owner) or satisfaction_survey"
    )
    delay_hours: StrictFloat = PydanticField(
        24.0, ge=0, le=24 * 366, description="how long after the event it falls due"
    )
    due_in_hours: StrictFloat = PydanticField(72.0, gt=0, le=24 * 60, description="a task's due time after creation")
    survey: SurveyKind | None = PydanticField(None, description=SURVEY_DESCRIPTION)

    @model_validator(mode="after")
    def _survey(self) -> TriggerBody:
        _survey_only_for_surveys(self.action, self.survey)
        return self


class TriggerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tier: str
    trigger: Trigger
    action: str
    delay_hours: float
    due_in_hours: float
    survey: str | None = None
    updated_at: UtcDatetime


class TriggersPublic(Page[TriggerPublic]):
    pass


# ---- a customer's follow-ups still to come ------------------------------------------------------------------


class FollowupKind(StrEnum):
    scheduled = "scheduled"  # the tier's schedule: the customer's next one
    after_event = "after_event"  # pending after a resolved complaint or a win-back


class PendingFollowupPublic(BaseModel):
    kind: FollowupKind
    action: str
    tier: str
    due_at: UtcDatetime
    trigger: Trigger | None = PydanticField(None, description="the event it follows (after_event only)")
    key: str | None = PydanticField(
        None, description="after_event: <trigger>:<complaint id or status-change event id>, one follow-up per event"
    )
    every_days: float | None = PydanticField(None, description="scheduled: the schedule's interval")
    last_result: str | None = PydanticField(
        None, description="scheduled: the previous follow-up's result (created, sent, or the block reason)"
    )


class PendingFollowupsPublic(Page[PendingFollowupPublic]):
    pass
