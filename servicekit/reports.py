"""The one way every report takes its period and answers: JSON, or CSV for a spreadsheet.

A report covers the half-open period ``[from, to)`` of whole days (UTC): ``from`` is the first day
counted, ``to`` the first day no longer counted, so consecutive periods neither overlap nor leave gaps.
A reversed or empty period is a 422 naming ``query.to``. ``?format=csv`` (or ``Accept: text/csv``)
answers the report's table as CSV instead of the JSON document.

SQL helpers for the few expressions that differ between PostgreSQL and SQLite (month buckets, day
differences) live here too, so each service's report queries stay one query for both databases.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Float, cast, func, literal_column
from sqlalchemy.dialects.postgresql import TIMESTAMP
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
