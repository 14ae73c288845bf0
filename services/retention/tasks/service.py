"""Tasks: a playbook's steps for the customer's account manager, and what agents do with them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts.retention import TaskCompleted, TaskCreated
from servicekit.clock import utc_now
from servicekit.db import hold_until_commit, insert_rows, take_held
from servicekit.events.envelope import EventData
from servicekit.problems import not_found
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.service import ActivePlaybook
from services.retention.db import new_id, page
from services.retention.playbooks.core import plan_tasks
from services.retention.publishing import publish
from services.retention.sequences import engine as sequence_engine
from services.retention.tasks.events import task_event
from services.retention.tasks.models import Task, TaskStatus
from services.retention.touches import service as touches

_NEW_TASKS = "retention.new_tasks"


async def create_tasks(
    *,
    uow: UnitOfWork,
    playbook: ActivePlaybook,
    customer_id: str,
    alert_id: str | None,
    tier: str | None,
    owner: str | None,
) -> list[EventData]:
    """The playbook's tasks for the customer's own account manager (owner), due from now; returns their events,
    for the caller to publish with its own (the alert raised, or nothing).

    Written as plain rows, for the whole transaction in one statement at commit (a consumer batch raises
    hundreds of alerts, each with its playbook's tasks). A read of tasks in the same transaction goes
    through stored_tasks, which writes them first.
    """
    session = uow.session
    if sequence_engine.enrols(playbook, tier):
        # The playbook has a sequence for this tier: its steps run over time (sequences/engine.py).
        await sequence_engine.enrol(
            session, playbook=playbook, customer_id=customer_id, alert_id=alert_id, tier=tier, owner=owner
        )
        return []
    now = utc_now()
    rows = [
        {
            "id": new_id(),
            "alert_id": alert_id,
            "customer_id": customer_id,
            "reason": playbook.reason,
            "action": planned.action,
            "owner": owner,
            "status": TaskStatus.open,
            "due_at": planned.due_at,
            "note": None,
            "completed_at": None,
            "created_at": now,
        }
        for planned in plan_tasks(playbook.steps, tier=tier, now=now)
    ]
    # Steps that contact the customer pass consent and the contact policy first; blocks are recorded.
    consents = uow.state(touches.Consents)
    rows, touch_events = await touches.screen(session, rows, tier=tier, consents=consents) if rows else (rows, [])
    if not rows:
        return []
    hold_until_commit(session, _NEW_TASKS, rows, insert_rows(Task.__table__))  # type: ignore[attr-defined]
    return [*(task_event(TaskCreated, SimpleNamespace(**row)) for row in rows), *touch_events]


def _write_new_tasks_now(session: Session) -> None:
    insert_rows(Task.__table__)(session, take_held(session, _NEW_TASKS))  # type: ignore[attr-defined]


async def stored_tasks(session: AsyncSession, *conditions: Any) -> Sequence[Task]:
    """Tasks matching the conditions, this transaction's new ones included (written first)."""
    await session.run_sync(_write_new_tasks_now)
    return (await session.execute(select(Task).where(*conditions))).scalars().all()


async def list_tasks(
    *,
    session: AsyncSession,
    owners: Sequence[str] = (),
    status: TaskStatus | None = None,
    overdue: bool | None = None,
    customer_id: str | None = None,
    alert_id: str | None = None,
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Task], int]:
    """Tasks, soonest due first; ``owners``: any of them (a manager's team)."""
    now = now or utc_now()
    conditions = []
    if owners:
        conditions.append(Task.owner.in_(list(owners)))
    for column, value in ((Task.customer_id, customer_id), (Task.alert_id, alert_id)):
        if value is not None:
            conditions.append(column == value)
    if status is not None:
        conditions.append(Task.status == str(status))
    if overdue is True:
        conditions += [Task.status == TaskStatus.open, Task.due_at < now]
    elif overdue is False:
        conditions.append(or_(Task.status != TaskStatus.open, Task.due_at >= now))
    query = select(Task).where(*conditions).order_by(Task.due_at, Task.id)
    return await page(session, query, conditions, Task, limit, offset)


async def get_task(*, session: AsyncSession, task_id: str) -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise not_found("Task", task_id)
    return task


async def complete_task(*, uow: UnitOfWork, task_id: str, note: str | None) -> Task:
    """Done, with a note. Completing a completed task again changes nothing (a retried request)."""
    session = uow.session
    task = (await session.execute(select(Task).where(Task.id == task_id).with_for_update())).scalar_one_or_none()
    if task is None:
        raise not_found("Task", task_id)
    if task.status == TaskStatus.completed:
        return task
    task.status = TaskStatus.completed
    task.note = note
    task.completed_at = utc_now()
    await session.flush()
    await publish(uow, task_event(TaskCompleted, task, completed_at=task.completed_at))
    return task
