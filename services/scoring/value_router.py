"""Customer value, value reports and the segment builder.

- GET /customers/{id}/value: historical, current, potential and referral value, RFM and the pyramid tier;
- GET /reports/value/{pyramid,concentration,tier-migration,rfm,summary}: JSON, or the table as CSV;
- /segments: saved filters (services.scoring.segment_filter) that list, count and export customers.

Every measure's definition and formula: docs/reports.md (Value).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from servicekit.deps import SessionDep
from servicekit.events.contracts.common import CustomerStatus
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error
from servicekit.reports import CSV, CSV_RESPONSE, PeriodDep, ReportFormat, answer, ratio, wants_csv
from services.scoring import measures, segment_filter, service, value_reports
from services.scoring.measures import ValueCounters
from services.scoring.models import CurrentScore, SavedSegment
from services.scoring.settings import ScoringSettings
from services.scoring.value_reports import Filters

router = APIRouter(tags=["value"])

Tier = Literal["platinum", "gold", "iron", "lead"]
Segments = Annotated[list[str] | None, Query(alias="segment", description="customer segment; repeatable")]
Statuses = Annotated[list[CustomerStatus] | None, Query(alias="status", description="customer status; repeatable")]
Tiers = Annotated[list[Tier] | None, Query(alias="tier", description="value tier by CLV as scored; repeatable")]
Basis = Annotated[
    Literal["clv", "contribution"] | None, Query(description="the pyramid's basis; default SCORING_VALUE_BASIS")
]


def _settings(request: Request) -> ScoringSettings:
    settings: ScoringSettings = request.app.state.settings
    return settings


def _filters(segment: list[str] | None, status: list[CustomerStatus] | None, tier: list[str] | None = None) -> Filters:
    for name, values in (("segment", segment),):
        for value in values or ():
            if not 0 < len(value) <= 100:
                raise Problem(
                    422,
                    "Invalid request",
                    code="validation",
                    errors=[field_error(f"query.{name}", "1 to 100 characters")],
                )
    statuses = [s.value for s in status or ()]
    return Filters(segments=segment or (), statuses=statuses, tiers=tier or ())


# ---- one customer --------------------------------------------------------------------------------------


class HistoricalValue(BaseModel):
    revenue: float = Field(description="total spend to date")
    contacts: int
    complaints: int
    returns: int
    cost_to_serve: float = Field(description="contacts x cost per contact + complaints x ... + returns x ...")
    contribution: float = Field(description="margin x revenue - cost to serve")


class CurrentValue(BaseModel):
    clv: float | None
    p_alive: float | None
    value_tier: str | None = Field(description="tier by CLV, as scored")
    value_model_version: str | None


class PotentialValue(BaseModel):
    wallet_estimate: float | None = Field(description="the customer attribute wallet_estimate")
    share_of_wallet: float | None = Field(description="revenue / wallet estimate")
    potential_value: float | None = Field(description="max(wallet estimate - revenue, 0)")


class ReferralValue(BaseModel):
    referrals: int
    referral_value: float = Field(description="stated amounts + unit value x referrals without one")


class Rfm(BaseModel):
    recency_last_purchase_at: datetime | None
    frequency: int
    monetary: float
    r: int | None = Field(description="1..5, 5 = bought most recently")
    f: int | None
    m: int | None
    segment: str | None


class CustomerValuePublic(BaseModel):
    customer_id: str
    basis: str
    tier: str | None = Field(description="pyramid tier on the basis")
    historical: HistoricalValue
    current: CurrentValue
    potential: PotentialValue
    referral: ReferralValue
    rfm: Rfm


@router.get("/customers/{customer_id}/value", response_model=CustomerValuePublic)
async def customer_value(customer_id: str, session: SessionDep, request: Request) -> CustomerValuePublic:
    """The customer's value as the source defines it: historical (contribution), current (CLV), potential
    (wallet headroom) and referral value, with RFM scores and segment and the pyramid tier on the basis."""
    settings = _settings(request)
    costs = settings.value_costs()
    row = await service._known(session, customer_id)
    score = await session.get(CurrentScore, customer_id)
    counters = ValueCounters(
        revenue=row.total_spend,
        contacts=row.contacts,
        complaints=row.complaints_total,
        returns=row.returns,
        referrals=row.referrals,
        referral_amount=row.referral_amount,
        referrals_with_amount=row.referrals_with_amount,
        wallet_estimate=row.wallet_estimate,
    )
    r = f = m = None
    segment = None
    tier: str | None = None
    if row.purchases > 0:
        ranks = await value_reports.customer_ranks(session=session, row=row, costs=costs)
        n = ranks["n"]
        r, f, m = (measures.bucket(ranks[k], n) for k in ("earlier", "fewer", "less"))
        segment = measures.rfm_segment(r, f, m)
        if settings.value_basis == measures.CONTRIBUTION:
            tier = measures.tier_for_rank(ranks["ahead"] + 1, n, settings.tier_shares)
    if settings.value_basis == measures.CLV:
        tier = None if score is None else score.value_tier
    return CustomerValuePublic(
        customer_id=customer_id,
        basis=settings.value_basis,
        tier=tier,
        historical=HistoricalValue(
            revenue=row.total_spend,
            contacts=row.contacts,
            complaints=row.complaints_total,
            returns=row.returns,
            cost_to_serve=measures.cost_to_serve(counters, costs),
            contribution=measures.contribution(counters, costs),
        ),
        current=CurrentValue(
            clv=None if score is None else score.clv,
            p_alive=None if score is None else score.p_alive,
            value_tier=None if score is None else score.value_tier,
            value_model_version=None if score is None else score.value_model_version,
        ),
        potential=PotentialValue(
            wallet_estimate=row.wallet_estimate,
            share_of_wallet=measures.share_of_wallet(counters),
            potential_value=measures.potential_value(counters),
        ),
        referral=ReferralValue(referrals=row.referrals, referral_value=measures.referral_value(counters, costs)),
        rfm=Rfm(
            recency_last_purchase_at=row.last_purchase_at,
            frequency=row.purchases,
            monetary=row.total_spend,
            r=r,
            f=f,
            m=m,
            segment=segment,
        ),
    )


# ---- reports -------------------------------------------------------------------------------------------

reports = APIRouter(prefix="/reports/value", tags=["reports"])


class PyramidRow(BaseModel):
    tier: str
    customers: int
    customer_share: float | None = Field(description="customers / all customers in the report")
    value: float = Field(description="sum of the basis value of the tier's customers")
    value_share: float | None = Field(description="value / all value in the report")


class PyramidReport(BaseModel):
    basis: str
    customers: int
    value: float
    items: list[PyramidRow]


TIER_ORDER = {t: i for i, t in enumerate((*measures.TIERS, value_reports.NONE_TIER))}


@reports.get("/pyramid", response_model=PyramidReport, responses={200: CSV_RESPONSE})
async def pyramid(
    request: Request,
    session: SessionDep,
    basis: Basis = None,
    segment: Segments = None,
    status: Statuses = None,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """Customers and share of value per pyramid tier, on the chosen basis (CLV or contribution)."""
    settings = _settings(request)
    chosen = basis or settings.value_basis
    rows = await value_reports.pyramid(
        session=session,
        basis=chosen,
        costs=settings.value_costs(),
        shares=settings.tier_shares,
        filters=_filters(segment, status),
    )
    rows.sort(key=lambda r: TIER_ORDER.get(r["tier"], 99))
    customers = sum(r["customers"] for r in rows)
    value = sum(float(r["value"] or 0) for r in rows)
    items = [
        PyramidRow(
            tier=r["tier"],
            customers=r["customers"],
            customer_share=ratio(r["customers"], customers),
            value=float(r["value"] or 0),
            value_share=ratio(float(r["value"] or 0), value),
        )
        for r in rows
    ]
    report = PyramidReport(basis=chosen, customers=customers, value=value, items=items)
    return answer(request, format, report, table="items", model=PyramidRow, filename="value-pyramid")


class LorenzPoint(BaseModel):
    customer_share: float = Field(description="share of customers, least valuable first")
    value_share: float = Field(description="share of value those customers hold")


class ConcentrationReport(BaseModel):
    basis: str
    customers: int
    value: float = Field(description="sum of the basis value, values below zero counted as zero")
    top: float = Field(description="the share of customers the top-share measure takes")
    top_share: float | None = Field(description="share of value held by the top `top` share of customers")
    gini: float | None = Field(description="2 x sum(i x v_i) / (n x sum v) - (n + 1) / n, v ascending")
    items: list[LorenzPoint]


@reports.get("/concentration", response_model=ConcentrationReport, responses={200: CSV_RESPONSE})
async def concentration(
    request: Request,
    session: SessionDep,
    basis: Basis = None,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    points: Annotated[int, Query(ge=2, le=100, description="Lorenz curve points")] = 10,
    top: Annotated[float, Query(gt=0, lt=1, description="the top share of customers (0.2: the 80/20 rule)")] = 0.2,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """The 80/20 rule: the share of value held by the top 20% of customers, the Lorenz curve and Gini."""
    settings = _settings(request)
    chosen = basis or settings.value_basis
    rows = await value_reports.concentration(
        session=session,
        basis=chosen,
        costs=settings.value_costs(),
        filters=_filters(segment, status, tier),
        points=points,
        top=top,
    )
    n = int(rows[0]["n"]) if rows else 0
    total = sum(float(r["value"] or 0) for r in rows)
    weighted = sum(float(r["weighted"] or 0) for r in rows)
    held = sum(float(r["top_value"] or 0) for r in rows)
    items: list[LorenzPoint] = []
    seen, cumulative = 0, 0.0
    if total > 0:
        by_bucket = {int(r["k"]): r for r in rows}
        for k in range(1, points + 1):  # an empty bucket (fewer customers than points) repeats the last point
            if k in by_bucket:
                seen += int(by_bucket[k]["customers"])
                cumulative += float(by_bucket[k]["value"] or 0)
            items.append(LorenzPoint(customer_share=seen / n, value_share=cumulative / total))
    gini = 2 * weighted / (n * total) - (n + 1) / n if total > 0 else None
    report = ConcentrationReport(
        basis=chosen,
        customers=n,
        value=total,
        top=top,
        top_share=ratio(held, total),
        gini=gini,
        items=items,
    )
    return answer(request, format, report, table="items", model=LorenzPoint, filename="value-concentration")


class MigrationRow(BaseModel):
    from_tier: str
    to_tier: str
    customers: int
    move: Literal["up", "down", "same", "new"]


class MigrationReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    customers: int
    upgraded: int
    downgraded: int
    unchanged: int
    new: int
    upgrade_rate: float | None = Field(description="upgraded / customers with a tier at the start")
    downgrade_rate: float | None
    items: list[MigrationRow]


def _move(a: str, b: str) -> Literal["up", "down", "same", "new"]:
    rank = {t: i for i, t in enumerate(measures.TIERS)}
    if a not in rank:
        return "new" if b in rank else "same"
    if b not in rank or a == b:
        return "same"
    return "up" if rank[b] < rank[a] else "down"


@reports.get(
    "/tier-migration", response_model=MigrationReport, response_model_by_alias=True, responses={200: CSV_RESPONSE}
)
async def tier_migration(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """The tier migration matrix: customers by their tier at the start of ``from`` and of ``to`` (the tier
    of their latest score before each), with the upgrade and downgrade rates."""
    rows = await value_reports.tier_migration(
        session=session, start=period.start_at, end=period.end_at, filters=_filters(segment, status, tier)
    )
    items = [
        MigrationRow(
            from_tier=r["from_tier"],
            to_tier=r["to_tier"],
            customers=r["customers"],
            move=_move(r["from_tier"], r["to_tier"]),
        )
        for r in rows
    ]
    items.sort(key=lambda i: (TIER_ORDER.get(i.from_tier, 99), TIER_ORDER.get(i.to_tier, 99)))
    count = {m: sum(i.customers for i in items if i.move == m) for m in ("up", "down", "same", "new")}
    ranked_at_start = sum(i.customers for i in items if i.from_tier in measures.TIERS)
    report = MigrationReport.model_validate(
        {
            "from": period.first.isoformat(),
            "to": period.end.isoformat(),
            "customers": sum(i.customers for i in items),
            "upgraded": count["up"],
            "downgraded": count["down"],
            "unchanged": count["same"],
            "new": count["new"],
            "upgrade_rate": ratio(count["up"], ranked_at_start),
            "downgrade_rate": ratio(count["down"], ranked_at_start),
            "items": items,
        }
    )
    return answer(request, format, report, table="items", model=MigrationRow, filename="value-tier-migration")


class RfmCell(BaseModel):
    r: int
    f: int
    m: int
    segment: str
    customers: int
    revenue: float


class RfmSegmentRow(BaseModel):
    segment: str
    customers: int
    share: float | None
    revenue: float


class RfmReport(BaseModel):
    customers: int
    segments: list[RfmSegmentRow]
    items: list[RfmCell]
    total: int
    limit: int
    offset: int


@reports.get("/rfm", response_model=RfmReport, responses={200: CSV_RESPONSE})
async def rfm(
    request: Request,
    session: SessionDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    format: ReportFormat = None,
    limit: Limit = 125,
    offset: Offset = 0,
) -> BaseModel | Response:
    """The RFM distribution: customers per (R, F, M) quintile cell and per RFM segment."""
    rows = await value_reports.rfm_cells(session=session, filters=_filters(segment, status, tier))
    cells = [
        RfmCell(
            r=r["r"],
            f=r["f"],
            m=r["m"],
            segment=measures.rfm_segment(r["r"], r["f"], r["m"]),
            customers=r["customers"],
            revenue=float(r["revenue"] or 0),
        )
        for r in rows
    ]
    customers = sum(c.customers for c in cells)
    segments = [
        RfmSegmentRow(
            segment=name,
            customers=sum(c.customers for c in cells if c.segment == name),
            share=ratio(sum(c.customers for c in cells if c.segment == name), customers),
            revenue=sum(c.revenue for c in cells if c.segment == name),
        )
        for name in measures.RFM_SEGMENTS
    ]
    report = RfmReport(
        customers=customers,
        segments=segments,
        items=cells[offset : offset + limit],
        total=len(cells),
        limit=limit,
        offset=offset,
    )
    return answer(request, format, report, table="items", model=RfmCell, filename="value-rfm")


class SummaryRow(BaseModel):
    customers: int
    revenue: float
    cost_to_serve: float
    contribution: float = Field(description="total historical value")
    avg_contribution: float | None = Field(description="average profitability per customer")
    customers_with_wallet: int
    avg_share_of_wallet: float | None
    potential_value: float
    referrals: int
    referral_value: float
    customers_with_clv: int
    clv: float
    avg_clv: float | None


class SummaryReport(BaseModel):
    items: list[SummaryRow]


@reports.get("/summary", response_model=SummaryReport, responses={200: CSV_RESPONSE})
async def summary(
    request: Request,
    session: SessionDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    format: ReportFormat = None,
) -> BaseModel | Response:
    """Average profitability per customer, total contribution, average share of wallet, referral value, CLV."""
    row = await value_reports.summary(
        session=session, costs=_settings(request).value_costs(), filters=_filters(segment, status, tier)
    )
    report = SummaryReport(items=[SummaryRow(**row)])
    return answer(request, format, report, table="items", model=SummaryRow, filename="value-summary")


# ---- segments ------------------------------------------------------------------------------------------

segments = APIRouter(prefix="/segments", tags=["segments"])


class SegmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    filter: list[Any] = Field(
        description="conditions that must all hold: [{field, op, value}]; GET /segments/fields lists the fields"
    )


class SegmentPublic(BaseModel):
    id: str
    name: str
    description: str | None
    filter: list[Any]
    created_by: str | None
    created_at: datetime


class SegmentsPublic(BaseModel):
    items: list[SegmentPublic]
    total: int
    limit: int
    offset: int


class SegmentField(BaseModel):
    field: str
    type: str
    ops: list[str]
    choices: list[str] | None
    description: str


class SegmentCustomer(BaseModel):
    customer_id: str
    segment: str | None
    status: str | None
    value_tier: str | None
    lifecycle_stage: str | None
    churn_risk: float | None
    clv: float | None
    contribution: float | None


class SegmentCustomersPublic(BaseModel):
    segment_id: str
    items: list[SegmentCustomer]
    total: int
    limit: int
    offset: int


class SegmentCount(BaseModel):
    segment_id: str
    customers: int


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
        raise Problem(404, "Segment not found", code="not_found", errors=[field_error("id", "unknown segment")])
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
    cuts = await value_reports.segment_cuts(session, conditions)
    n = await value_reports.segment_count(
        session=session, conditions=conditions, costs=_settings(request).value_costs(), cuts=cuts
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
    costs = _settings(request).value_costs()
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
