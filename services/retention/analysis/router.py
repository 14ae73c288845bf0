"""Analysis report routes: /reports/retention/cohorts and /reports/retention/task-sla.

JSON by default, the report's table as CSV with ``?format=csv`` or ``Accept: text/csv``. Definitions and
formulas: docs/reports.md, "Cohorts by first-purchase month" and "Task SLA per owner".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from services.retention.analysis import curves, service
from services.retention.db import Tier
from services.retention.reports.sql import Filters

router = APIRouter(prefix="/reports/retention", tags=["reports"])

Tiers = Annotated[list[Tier] | None, Query(alias="tier", description="value tier; repeatable")]
Segments = Annotated[list[str] | None, Query(alias="segment", description="repeat to match any of several")]
Owners = Annotated[list[str] | None, Query(alias="owner", description="repeatable")]
Teams = Annotated[list[str] | None, Query(alias="team", description="the customer's team attribute; repeatable")]


def _filters(
    tier: list[Tier] | None, segment: list[str] | None, owner: list[str] | None, team: list[str] | None
) -> Filters:
    return Filters(tiers=tier or (), segments=segment or (), owners=owner or (), teams=team or ())


# ---- cohorts by first-purchase month ---------------------------------------------------------------------


class CohortPoint(BaseModel):
    cohort: str = Field(description="YYYY-MM: the month of the members' first purchase")
    size: int = Field(description="members: customers (not erased) whose first purchase fell in that month")
    month: int = Field(description="months after the cohort month (0: the cohort month itself)")
    active: int = Field(description="members who bought in that month")
    active_share: float = Field(description="active / size")
    retained: int = Field(description="members with no churn before that month ended")
    retention: float = Field(description="retained / size")


class CohortReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    months: int
    points: list[CohortPoint]


@report_route(router, "/cohorts", CohortReport, CsvTable("points", CohortPoint, "cohorts-first-purchase"))
async def cohorts(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    months: Annotated[
        int, Query(ge=0, le=curves.MAX_MONTHS, description="curve length in months after the cohort month")
    ] = 12,
    format: ReportFormat = None,
) -> ReportFields:
    """Cohorts by first-purchase month: the customers whose first purchase fell in each month of
    ``[from, to)``, and for each following month the share who bought in it (``active_share``) and the
    share not churned by its end (``retention``). Only months that have ended are shown; at most
    ``months`` + 1 points per cohort. ``owner`` is the customer's account manager."""
    cells, active = await service.cohort_cells(
        session=session, period=period, filters=_filters(tier, segment, owner, team), months=months
    )
    today = utc_now().date()
    last_ended = curves.month_name(today.year * 12 + today.month - 2)
    points = curves.cohort_points(cells, active, months=months, last_month=last_ended)
    return {"months": months, "points": [CohortPoint(**asdict(p)) for p in points]}


# ---- task SLA per owner ----------------------------------------------------------------------------------


class TaskSlaRow(BaseModel):
    owner: str | None = Field(description="the task's owner (None: unassigned)")
    tasks: int = Field(description="tasks due in the period")
    completed: int
    completed_on_time: int = Field(description="completed at or before their due time")
    completed_late: int
    open_overdue: int = Field(description="still open, due time passed")
    open_not_due: int = Field(description="still open, due time not yet reached")
    cancelled: int = Field(description="cancelled (their alert closed as churned); outside the SLA")
    sla_due: int = Field(description="completed + open_overdue")
    sla_met: int = Field(description="completed_on_time")
    sla_compliance: float | None = Field(description="sla_met / sla_due")
    hours_to_complete_avg: float | None = Field(description="mean hours from creation to completion")
    hours_late_avg: float | None = Field(description="mean hours past the due time of the late completions")


class TaskSlaReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    total: int
    limit: int
    offset: int
    items: list[TaskSlaRow]


@report_route(router, "/task-sla", TaskSlaReport, CsvTable("items", TaskSlaRow, "task-sla"))
async def task_sla(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Task SLA compliance per owner, for the tasks due in ``[from, to)``: completed on time or late,
    open past their due time, cancelled; SLA compliance = on time / (completed + open overdue)."""
    rows, total = await service.task_sla(
        session=session,
        period=period,
        filters=_filters(tier, segment, owner, team),
        now=utc_now(),
        limit=limit,
        offset=offset,
    )
    items = []
    for r in rows:
        completed, on_time, overdue = int(r["completed"] or 0), int(r["on_time"] or 0), int(r["open_overdue"] or 0)
        cancelled = int(r["cancelled"] or 0)
        items.append(
            TaskSlaRow(
                owner=r["owner"],
                tasks=int(r["tasks"]),
                completed=completed,
                completed_on_time=on_time,
                completed_late=completed - on_time,
                open_overdue=overdue,
                open_not_due=int(r["tasks"]) - completed - overdue - cancelled,
                cancelled=cancelled,
                sla_due=completed + overdue,
                sla_met=on_time,
                sla_compliance=ratio(on_time, completed + overdue),
                hours_to_complete_avg=r["hours_to_complete_avg"],
                hours_late_avg=r["hours_late_avg"],
            )
        )
    return {"total": total, "items": items}
