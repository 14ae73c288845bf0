"""/segments: saved filters (services.scoring.segments.segment_filter) that list, count and export customers."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error, not_found
from servicekit.reports import CSV, CSV_RESPONSE, ReportFormat, wants_csv, without_jit
from services.scoring.http import settings_of
from services.scoring.segments import segment_filter
from services.scoring.segments import service as value_reports
from services.scoring.segments.models import (
    SavedSegment,
    SegmentCount,
    SegmentCreate,
    SegmentCustomer,
    SegmentCustomersPublic,
    SegmentField,
    SegmentPublic,
    SegmentsPublic,
)
from services.scoring.value import measures

segments = APIRouter(prefix="/segments", tags=["segments"])


def _public(row: SavedSegment) -> SegmentPublic:
    return SegmentPublic(
        id=row.id,
        name=row.name,
        description=row.description,
        filter=row.conditions,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _parse(conditions: Any, location: str) -> tuple[segment_filter.Condition, ...]:
    try:
        return segment_filter.parse(conditions, location=location)
    except segment_filter.FilterError as exc:
        raise Problem(
            422,
            "Invalid segment filter",
            exc.message,
            code="validation",
            errors=[field_error(exc.location, exc.message)],
        ) from None


async def _segment(session: SessionDep, segment_id: str) -> SavedSegment:
    row = await session.get(SavedSegment, segment_id)
    if row is None:
        raise not_found("Segment", segment_id, detail="")  # no detail: the problem document stays as it was
    return row


@segments.get("/fields", response_model=list[SegmentField])
async def segment_fields() -> list[SegmentField]:
    """The fields a segment filter may name, with their operators and allowed values."""
    return [
        SegmentField(
            field=name,
            type=spec.kind,
            ops=sorted(segment_filter.OPS[spec.kind]),
            choices=None if spec.choices is None else list(spec.choices),
            description=spec.description,
        )
        for name, spec in segment_filter.FIELDS.items()
    ]


@segments.post("", response_model=SegmentPublic, status_code=201)
async def create_segment(body: SegmentCreate, session: SessionDep) -> SegmentPublic:
    """Save a filter. An unknown field, operator or a value of the wrong type is a 422 naming it."""
    _parse(body.filter, "body.filter")
    row = SavedSegment(
        id=f"seg_{uuid.uuid4().hex[:20]}",
        name=body.name,
        description=body.description,
        conditions=body.filter,
        created_by=None,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    public = _public(row)
    await session.commit()
    return public


@segments.get("", response_model=SegmentsPublic)
async def list_segments(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> SegmentsPublic:
    total = (await session.execute(select(func.count()).select_from(SavedSegment))).scalar_one()
    rows = (
        await session.execute(
            select(SavedSegment).order_by(SavedSegment.created_at.desc(), SavedSegment.id).limit(limit).offset(offset)  # type: ignore[attr-defined]
        )
    ).scalars()
    return SegmentsPublic(items=[_public(r) for r in rows], total=total, limit=limit, offset=offset)


@segments.get("/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: str, session: SessionDep) -> SegmentPublic:
    return _public(await _segment(session, segment_id))


@segments.delete("/{segment_id}", status_code=204)
async def delete_segment(segment_id: str, session: SessionDep) -> Response:
    row = await _segment(session, segment_id)
    await session.delete(row)
    await session.commit()
    return Response(status_code=204)


@segments.get("/{segment_id}/count", response_model=SegmentCount)
async def count_segment(segment_id: str, session: SessionDep, request: Request) -> SegmentCount:
    row = await _segment(session, segment_id)
    conditions = _parse(row.conditions, "filter")
    await without_jit(session)
    cuts = await value_reports.segment_cuts(session, conditions)
    n = await value_reports.segment_count(
        session=session, conditions=conditions, costs=settings_of(request).value_costs(), cuts=cuts
    )
    return SegmentCount(segment_id=segment_id, customers=n)


EXPORT_CHUNK = 1000


@segments.get("/{segment_id}/customers", response_model=SegmentCustomersPublic, responses={200: CSV_RESPONSE})
async def segment_customers(
    segment_id: str,
    session: SessionDep,
    request: Request,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """The segment's customers in customer-id order, a page at a time; ``?format=csv`` exports all of
    them as CSV, read a chunk at a time."""
    row = await _segment(session, segment_id)
    conditions = _parse(row.conditions, "filter")
    costs = settings_of(request).value_costs()
    await without_jit(session)
    cuts = await value_reports.segment_cuts(session, conditions)
    if wants_csv(request, format):
        await session.rollback()  # read-only so far: end the transaction before the export opens its own
        return StreamingResponse(
            _export(request, conditions, costs, cuts),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
        )
    rows = await value_reports.segment_page(
        session=session, conditions=conditions, costs=costs, limit=limit, offset=offset, cuts=cuts
    )
    total = await value_reports.segment_count(session=session, conditions=conditions, costs=costs, cuts=cuts)
    return SegmentCustomersPublic(
        segment_id=segment_id, items=[SegmentCustomer(**r) for r in rows], total=total, limit=limit, offset=offset
    )


async def _export(
    request: Request,
    conditions: tuple[segment_filter.Condition, ...],
    costs: measures.ValueCosts,
    cuts: value_reports.RfmCuts | None,
) -> AsyncIterator[str]:
    """The rows a chunk at a time (keyset on the customer id), each chunk in its own short read transaction:
    the request's session is gone once the response starts streaming. RFM quintiles use the cuts taken
    when the export began."""
    columns = list(SegmentCustomer.model_fields)
    after: str | None = None
    header = True
    while True:
        async with request.app.state.database.transaction() as session:
            await without_jit(session)
            rows = await value_reports.segment_page(
                session=session, conditions=conditions, costs=costs, limit=EXPORT_CHUNK, after=after, cuts=cuts
            )
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if header:
            writer.writeheader()
            header = False
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        yield out.getvalue()
        if len(rows) < EXPORT_CHUNK:
            return
        after = rows[-1]["customer_id"]
