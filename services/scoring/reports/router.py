"""GET /reports/value/{pyramid,concentration,tier-migration,rfm,summary}: JSON, or the table as CSV.

Every measure's definition and formula: docs/reports.md (Value).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from servicekit.deps import SessionDep
from servicekit.pagination import Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from services.scoring.http import Basis, Owners, Segments, Statuses, Teams, Tiers, filters_of, settings_of
from services.scoring.reports import rfm as rfm_reports
from services.scoring.reports import service as value_reports
from services.scoring.value import measures

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


@report_route(reports, "/pyramid", PyramidReport, CsvTable("items", PyramidRow, "value-pyramid"))
async def pyramid(
    request: Request,
    session: SessionDep,
    basis: Basis = None,
    segment: Segments = None,
    status: Statuses = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Customers and share of value per pyramid tier, on the chosen basis (CLV or contribution)."""
    settings = settings_of(request)
    chosen = basis or settings.value_basis
    rows = await value_reports.pyramid(
        session=session,
        basis=chosen,
        costs=settings.value_costs(),
        shares=settings.tier_shares,
        filters=filters_of(segment, status, owner=owner, team=team),
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
    return {"basis": chosen, "customers": customers, "value": value, "items": items}


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


@report_route(reports, "/concentration", ConcentrationReport, CsvTable("items", LorenzPoint, "value-concentration"))
async def concentration(
    request: Request,
    session: SessionDep,
    basis: Basis = None,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    owner: Owners = None,
    team: Teams = None,
    points: Annotated[int, Query(ge=2, le=100, description="Lorenz curve points")] = 10,
    top: Annotated[float, Query(gt=0, lt=1, description="the top share of customers (0.2: the 80/20 rule)")] = 0.2,
    format: ReportFormat = None,
) -> ReportFields:
    """The 80/20 rule: the share of value held by the top 20% of customers, the Lorenz curve and Gini."""
    settings = settings_of(request)
    chosen = basis or settings.value_basis
    rows = await value_reports.concentration(
        session=session,
        basis=chosen,
        costs=settings.value_costs(),
        filters=filters_of(segment, status, tier, owner, team),
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
    return {
        "basis": chosen,
        "customers": n,
        "value": total,
        "top": top,
        "top_share": ratio(held, total),
        "gini": gini,
        "items": items,
    }


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


@report_route(reports, "/tier-migration", MigrationReport, CsvTable("items", MigrationRow, "value-tier-migration"))
async def tier_migration(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """The tier migration matrix: customers by their tier at the start of ``from`` and of ``to`` (the tier
    of their latest score before each), with the upgrade and downgrade rates."""
    rows = await value_reports.tier_migration(
        session=session,
        start=period.start_at,
        end=period.end_at,
        filters=filters_of(segment, status, tier, owner, team),
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
    return {
        "customers": sum(i.customers for i in items),
        "upgraded": count["up"],
        "downgraded": count["down"],
        "unchanged": count["same"],
        "new": count["new"],
        "upgrade_rate": ratio(count["up"], ranked_at_start),
        "downgrade_rate": ratio(count["down"], ranked_at_start),
        "items": items,
    }


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


@report_route(reports, "/rfm", RfmReport, CsvTable("items", RfmCell, "value-rfm"))
async def rfm(
    request: Request,
    session: SessionDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
    limit: Limit = 125,
    offset: Offset = 0,
) -> ReportFields:
    """The RFM distribution: customers per (R, F, M) quintile cell and per RFM segment."""
    rows = await rfm_reports.rfm_cells(session=session, filters=filters_of(segment, status, tier, owner, team))
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
    return {"customers": customers, "segments": segments, "items": cells[offset : offset + limit], "total": len(cells)}


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


@report_route(reports, "/summary", SummaryReport, CsvTable("items", SummaryRow, "value-summary"))
async def summary(
    request: Request,
    session: SessionDep,
    segment: Segments = None,
    status: Statuses = None,
    tier: Tiers = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Average profitability per customer, total contribution, average share of wallet, referral value, CLV."""
    row = await value_reports.summary(
        session=session,
        costs=settings_of(request).value_costs(),
        filters=filters_of(segment, status, tier, owner, team),
    )
    return {"items": [SummaryRow(**row)]}
