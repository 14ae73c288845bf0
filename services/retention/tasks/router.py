"""HTTP routes of tasks: an account manager's list, one task, and completing it."""

from typing import Annotated

from fastapi import APIRouter, Body, Query

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.unit_of_work import UnitOfWork
from services.retention.tasks import service as tasks
from services.retention.tasks.models import TaskComplete, TaskPublic, TasksPublic, TaskStatus

router = APIRouter()


@router.get("/tasks", response_model=TasksPublic, tags=["tasks"])
async def list_tasks(
    session: SessionDep,
    owner: Annotated[list[str] | None, Query(description="account manager; repeat to match any of several")] = None,
    status: TaskStatus | None = None,
    overdue: Annotated[bool | None, Query(description="true: open and past due")] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    alert_id: Annotated[str | None, Query(min_length=1, max_length=36)] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> TasksPublic:
    """Tasks, soonest due first."""
    now = utc_now()
    rows, total = await tasks.list_tasks(
        session=session,
        owners=owner or (),
        status=status,
        overdue=overdue,
        customer_id=customer_id,
        alert_id=alert_id,
        now=now,
        limit=limit,
        offset=offset,
    )
    return TasksPublic(items=[TaskPublic.of(t, now) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskPublic, tags=["tasks"])
async def get_task(task_id: str, session: SessionDep) -> TaskPublic:
    """One task. The gateway reads it to decide whether an agent may see or complete it."""
    return TaskPublic.of(await tasks.get_task(session=session, task_id=task_id), utc_now())


@router.post("/tasks/{task_id}/complete", response_model=TaskPublic, tags=["tasks"])
async def complete_task(
    task_id: str, session: SessionDep, data: Annotated[TaskComplete | None, Body()] = None
) -> TaskPublic:
    task = await tasks.complete_task(uow=UnitOfWork(session), task_id=task_id, note=data.note if data else None)
    await session.commit()
    return TaskPublic.of(task, utc_now())
