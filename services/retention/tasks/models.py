"""Tasks: the table and API shapes of an account manager's retention tasks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Index, String
from sqlmodel import Field

from servicekit.pagination import Page
from servicekit.types import as_utc
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    new_id,
)
from services.retention.playbooks.core import Action


class TaskStatus(StrEnum):
    open = "open"
    completed = "completed"
    cancelled = "cancelled"  # its alert closed as churned: the win-back playbook takes over


class Task(RetentionTable, table=True):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_due", "status", "due_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    alert_id: str | None = Field(default=None, max_length=36, index=True)
    customer_id: str = Field(max_length=100, index=True)
    reason: str = Field(max_length=64)
    action: Action = Field(sa_type=String(40))
    owner: str | None = Field(default=None, max_length=100, index=True)
    status: TaskStatus = Field(default=TaskStatus.open, sa_type=String(20))
    due_at: datetime = at_field()
    note: str | None = Field(default=None, max_length=2000)
    completed_at: datetime | None = at_field(nullable=True)
    created_at: datetime = at_field()


class TaskPublic(BaseModel):
    id: str
    alert_id: str | None
    customer_id: str
    reason: str
    action: Action
    owner: str | None
    status: TaskStatus
    due_at: UtcDatetime
    overdue: bool
    note: str | None
    completed_at: UtcDatetime | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, task: Task, now: datetime) -> TaskPublic:
        data = {name: getattr(task, name) for name in cls.model_fields if name != "overdue"}
        overdue = task.status == TaskStatus.open and as_utc(task.due_at) < now
        return cls.model_validate({**data, "overdue": overdue})


class TasksPublic(Page[TaskPublic]):
    pass


class TaskComplete(BaseModel):
    note: str | None = PydanticField(default=None, max_length=2000)
