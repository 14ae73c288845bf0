"""Report routes of the interaction service: complaint analytics (docs/reports.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StringConstraints

from contracts.common import Severity
from contracts.customer import VALUE_TIERS
from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, ratio, report_route
from services.interaction.complaints.workflow import ComplaintCategory
from services.interaction.reports import service as reports

router = APIRouter(prefix="/reports/complaints", tags=["reports"])

Text = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Tier = Literal[VALUE_TIERS]  # type: ignore[valid-type]


class ComplaintRow(BaseModel):
    group: str | None = Field(description="the group's category, severity or channel; 'all' without group_by")
    opened: int = Field(description="complaints opened in the period (投诉)")
    valid: int = Field(description="of those, judged valid")
    rejected: int = Field(description="of those, judged not valid")
    validity_rate: float | None = Field(description="valid / (valid + rejected)")
    resolved: int
    avg_days_to_resolve: float | None = Field(description="mean of (first resolved step - opened) in days")
    max_days_to_resolve: float | None
    sla_due: int = Field(description="complaints handled (resolved or rejected) or past their deadline")
    sla_met: int = Field(description="handled by their deadline")
    sla_compliance: float | None = Field(description="sla_met / sla_due")
    complainers: int = Field(description="distinct customers who complained")
    repeat_complainers: int = Field(description="customers with two or more complaints in the period")
    repeat_complaint_share: float | None = Field(description="complaints from repeat complainers / opened")


class ComplaintReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: Literal["category", "severity", "channel"] | None
    items: list[ComplaintRow]
    total: int
    limit: int
    offset: int


@report_route(router, "", ComplaintReport, CsvTable("items", ComplaintRow, "complaints"))
async def complaint_report(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    category: Annotated[list[ComplaintCategory] | None, Query(description="repeatable")] = None,
    severity: Annotated[list[Severity] | None, Query(description="repeatable")] = None,
    owner: Annotated[list[Text] | None, Query(description="the customer's current account manager; repeatable")] = None,
    segment: Annotated[list[Text] | None, Query(description="the customer's current segment; repeatable")] = None,
    team: Annotated[list[Text] | None, Query(description="the customer's `team` attribute; repeatable")] = None,
    tier: Annotated[
        list[Tier] | None,
        Query(description="the customer's value tier: account-managed, else as scored; repeatable"),
    ] = None,
    group_by: Literal["category", "severity", "channel"] | None = None,
    format: ReportFormat = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ReportFields:
    """Complaint analytics for complaints opened in ``[from, to)``: volume, validity rate, time to
    resolve, SLA compliance and repeat complainers, overall or per category, severity or channel;
    filtered by the customer's current owner, segment, team and value tier (this service's replica)."""
    rows, total = await reports.complaints(
        session=session,
        period=period,
        categories=[c.value for c in category or ()],
        severities=[s.value for s in severity or ()],
        owners=owner or (),
        segments=segment or (),
        teams=team or (),
        tiers=tier or (),
        group_by=group_by,
        now=utc_now(),
        limit=limit,
        offset=offset,
    )
    items = [
        ComplaintRow(
            group=r["grp"],
            opened=r["opened"],
            valid=int(r["valid"] or 0),
            rejected=int(r["rejected"] or 0),
            validity_rate=ratio(r["valid"], (r["valid"] or 0) + (r["rejected"] or 0)),
            resolved=r["resolved"],
            avg_days_to_resolve=r["avg_days_to_resolve"],
            max_days_to_resolve=r["max_days_to_resolve"],
            sla_due=int(r["sla_due"] or 0),
            sla_met=int(r["sla_met"] or 0),
            sla_compliance=ratio(r["sla_met"], r["sla_due"]),
            complainers=r["complainers"],
            repeat_complainers=int(r["repeat_complainers"] or 0),
            repeat_complaint_share=ratio(r["repeat_complaints"], r["opened"]),
        )
        for r in rows
    ]
    return {"group_by": group_by, "items": items, "total": total}
