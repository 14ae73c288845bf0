"""The event of a task, built from a stored Task or from a new task's row not written yet."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from contracts.retention import TaskEvent
from servicekit.clock import utc_now
from services.retention.tasks.models import Task


def task_event(event_cls: type[TaskEvent], task: Task | SimpleNamespace, **extra: Any) -> TaskEvent:
    """The event of a task: a stored Task, or a new task's row (as attributes) not written yet."""
    return event_cls(
        task_id=task.id,
        customer_id=task.customer_id,
        alert_id=task.alert_id,
        reason=task.reason,
        action=task.action,
        owner=task.owner,
        status=task.status,
        due_at=task.due_at,
        at=utc_now(),
        **extra,
    )
