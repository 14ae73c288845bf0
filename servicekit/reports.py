"""The one way every report takes its period and answers: JSON, or CSV for a spreadsheet.

A report covers the half-open period ``[from, to)`` of whole days (UTC): ``from`` is the first day
counted, ``to`` the first day no longer counted, so consecutive periods neither overlap nor leave gaps.
A reversed or empty period is a 422 naming ``query.to``. ``?format=csv`` (or ``Accept: text/csv``)
answers the report's table as CSV instead of the JSON document.

A report route is declared once with ``report_route``: its path, the report model and the table its CSV
answer holds; the function under it takes the route's parameters and returns the report's own fields.

SQL helpers for the few expressions that differ between PostgreSQL and SQLite (month buckets, day
differences) live here too, so each service's report queries stay one query for both databases.
"""

from __future__ import annotations

import csv
import functools
import inspect
import io
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Float, cast, func, literal_column, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.problems import Problem, field_error

CSV = "text/csv"
_TIMESTAMPTZ = TIMESTAMP(timezone=True)
# Where a route documents its CSV answer: responses={200: CSV_RESPONSE}.
CSV_RESPONSE: dict[str, Any] = {"content": {CSV: {"schema": {"type": "string"}}}, "description": "JSON or CSV"}


@dataclass(frozen=True, slots=True)
class Period:
    """``[first, end)`` in days, with the instants that bound it (midnight UTC)."""

    first: date
    end: date

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time.min, tzinfo=UTC)


def period(
    from_: Annotated[date, Query(alias="from", description="first day of the period (inclusive, UTC)")],
    to: Annotated[date, Query(description="first day after the period (exclusive, UTC)")],
) -> Period:
    if to <= from_:
        raise Problem(
            422,
            "Invalid request",
            "The period [from, to) must not be empty or reversed.",
            code="validation",
            errors=[field_error("query.to", "must be a later day than from")],
        )
    return Period(from_, to)


PeriodDep = Annotated[Period, Depends(period)]
ReportFormat = Annotated[
    Literal["json", "csv"] | None, Query(alias="format", description="csv: the report's table as CSV")
]


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return CSV in request.headers.get("accept", "")


def csv_response(rows: Iterable[Mapping[str, Any]], *, columns: list[str], filename: str) -> Response:
    """``rows`` as CSV with a header line; None becomes an empty cell, floats keep full precision."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def answer(
    request: Request, fmt: str | None, report: BaseModel, *, table: str, model: type[BaseModel], filename: str
) -> BaseModel | Response:
    """The report as JSON, or its list field ``table`` (rows of ``model``) as CSV when asked for."""
    if not wants_csv(request, fmt):
        return report
    rows = [row.model_dump(mode="json") for row in getattr(report, table)]
    return csv_response(rows, columns=list(model.model_fields), filename=filename)


def period_head(period: Period) -> dict[str, str]:
    """A report's ``from`` and ``to``: the period's first day and the first day after it (ISO dates)."""
    return {"from": period.first.isoformat(), "to": period.end.isoformat()}


@dataclass(frozen=True, slots=True)
class CsvTable:
    """The list field of a report that its CSV answer holds, the model of that list's rows, the file's name."""

    field: str
    row: type[BaseModel]
    filename: str


# What a report function returns: the report's fields, less those report_route fills in.
ReportFields = Mapping[str, Any]
ReportFunction = Callable[..., Awaitable[ReportFields]]
ReportEndpoint = Callable[..., Awaitable[BaseModel | Response]]


def report_route(
    router: APIRouter,
    path: str,
    model: type[BaseModel],
    table: CsvTable | Callable[[Mapping[str, Any]], CsvTable],
    **route: Any,
) -> Callable[[ReportFunction], ReportEndpoint]:
    """Declare the report ``GET path``: JSON shaped as ``model``, or ``table`` as CSV when asked for.

    The decorated function is the route as FastAPI sees it (its parameters, name and docstring make the
    OpenAPI operation); it must take ``request`` and ``format: ReportFormat``, and returns the report's
    fields as a mapping. Filled in here: ``from`` and ``to`` when the route takes ``period: PeriodDep``,
    ``limit`` and ``offset`` (from its parameters) when the model has them. ``table`` may be a function
    of the route's arguments, for a report whose CSV table depends on them (e.g. a ``group_by``).
    ``route``: further options of ``router.get`` (the defaults: the model by alias, the CSV response).
    """

    def register(function: ReportFunction) -> ReportEndpoint:
        parameters = inspect.signature(function).parameters
        missing = sorted({"request", "format"} - set(parameters))
        if missing:
            raise TypeError(f"report route {function.__name__} must take {', '.join(missing)}")
        paged = [name for name in ("limit", "offset") if name in parameters and name in model.model_fields]

        @functools.wraps(function)
        async def endpoint(**arguments: Any) -> BaseModel | Response:
            if isinstance(session := arguments.get("session"), AsyncSession):
                await without_jit(session)
            fields = dict(await function(**arguments))
            period = arguments.get("period")
            if isinstance(period, Period):
                fields.update(period_head(period))
            fields.update({name: arguments[name] for name in paged})
            report = model.model_validate(fields)
            chosen = table if isinstance(table, CsvTable) else table(arguments)
            return answer(
                arguments["request"],
                arguments["format"],
                report,
                table=chosen.field,
                model=chosen.row,
                filename=chosen.filename,
            )

        options: dict[str, Any] = {"response_model_by_alias": True, "responses": {200: CSV_RESPONSE}, **route}
        router.get(path, response_model=model, **options)(endpoint)
        return endpoint

    return register


async def without_jit(session: AsyncSession) -> None:
    """Turn PostgreSQL's JIT compilation off for the rest of the session's transaction (nothing elsewhere).

    A report is a few aggregation queries over a service's whole store: their estimated cost passes
    ``jit_above_cost``, so PostgreSQL compiles each to machine code first, which takes longer than it
    saves on queries answered in well under a second. Called before a report's first query."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL jit = off"))


# What a report that groups a row per customer may hash or sort in memory per plan step (the default 4 MB
# spills 100,000 customers' groups to disk).
PER_CUSTOMER_WORK_MEM = "16MB"


async def per_customer_plan(session: AsyncSession) -> None:
    """Plan settings for the rest of the session's transaction (PostgreSQL only) for a report that groups a
    row per customer: no parallel workers, and PER_CUSTOMER_WORK_MEM per step.

    Such a plan puts the per-customer aggregate below a parallel hash join, where each worker builds it
    again: the largest step done twice, and on a machine whose cores are busy with other work the second
    process gains no time. With 4 MB the aggregate and the final sort spill to disk."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        await session.execute(text(f"SET LOCAL work_mem = '{PER_CUSTOMER_WORK_MEM}'"))


def ratio(numerator: float | int | None, denominator: float | int | None) -> float | None:
    """numerator / denominator, or None when the denominator is zero (a rate of nothing is unknown, not 0)."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ---- SQL that differs by dialect ---------------------------------------------------------------------


def month_of(column: Any, dialect: str) -> ColumnElement[str]:
    """'YYYY-MM' of a date or timestamp column (UTC)."""
    if dialect == "postgresql":
        return func.to_char(column, literal_column("'YYYY-MM'"))
    return func.strftime("%Y-%m", column)


def days_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """``later - earlier`` in (fractional) days; either side a date or a timestamp."""
    if dialect == "postgresql":
        seconds = func.extract("epoch", cast(later, _TIMESTAMPTZ) - cast(earlier, _TIMESTAMPTZ))
        return cast(seconds, Float) / 86400.0
    return cast(func.julianday(later) - func.julianday(earlier), Float)
