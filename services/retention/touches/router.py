"""Touch routes: a customer's touches (allowed and blocked) and the blocked-touches report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.common import ContactChannel
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.reports import CsvTable, PeriodDep, ReportFields, ReportFormat, report_route
from services.retention.reports.params import Owners, Segments, Teams, Tiers, filters_of
from services.retention.reports.sql import matching_customers
from services.retention.touches import service as touches
from services.retention.touches.contact_policy import BLOCK_REASONS
from services.retention.touches.models import TouchesPublic, TouchPublic

router = APIRouter(tags=["touches"])


@router.get("/customers/{customer_id}/touches", response_model=TouchesPublic)
async def customer_touches(
    customer_id: str,
    session: SessionDep,
    allowed: Annotated[bool | None, Query(description="true: only allowed; false: only blocked")] = None,
    channel: ContactChannel | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> TouchesPublic:
    """Every playbook step that would have contacted the customer, newest first: allowed (``task_id`` is
    the task it became) or blocked (``verdict`` says why). A customer with no touches has an empty page."""
    items, total = await touches.list_touches(
        session=session,
        customer_id=customer_id,
        allowed=allowed,
        channel=channel.value if channel else None,
        limit=limit,
        offset=offset,
    )
    return TouchesPublic(items=[TouchPublic.model_validate(t) for t in items], total=total, limit=limit, offset=offset)


class BlockedRow(BaseModel):
    verdict: str = Field(description=f"why: one of {', '.join(BLOCK_REASONS)}")
    channel: str
    blocked: int


class BlockedReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    allowed: int = Field(description="touches allowed in the period")
    blocked: int = Field(description="touches blocked in the period")
    by_verdict: dict[str, int]
    by_channel: dict[str, int]
    items: list[BlockedRow]


@report_route(
    router, "/reports/retention/touches-blocked", BlockedReport, CsvTable("items", BlockedRow, "touches-blocked")
)
async def touches_blocked(
    request: Request,
    session: SessionDep,
    period: PeriodDep,
    tier: Tiers = None,
    segment: Segments = None,
    owner: Owners = None,
    team: Teams = None,
    format: ReportFormat = None,
) -> ReportFields:
    """Touches blocked by consent or the contact policy, recorded in ``[from, to)``, counted by reason and
    channel, next to the number allowed; filtered by the customer's current tier, segment, owner and team."""
    rows, allowed, blocked = await touches.blocked_counts(
        session=session,
        start=period.start_at,
        end=period.end_at,
        customers=matching_customers(filters_of(tier, segment, owner, team)),
    )
    items = [BlockedRow(verdict=v, channel=c, blocked=n) for v, c, n in rows]
    by_verdict: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    for item in items:
        by_verdict[item.verdict] = by_verdict.get(item.verdict, 0) + item.blocked
        by_channel[item.channel] = by_channel.get(item.channel, 0) + item.blocked
    return {"allowed": allowed, "blocked": blocked, "by_verdict": by_verdict, "by_channel": by_channel, "items": items}
