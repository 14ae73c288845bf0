"""HTTP route of the retention metrics (outcomes): churn, retention and save rates, precision, uplift."""

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.reports import without_jit
from servicekit.types import UtcDatetime
from services.retention.outcomes import service as outcomes
from services.retention.outcomes.models import RetentionMetricsPublic
from services.retention.settings import RetentionSettings

router = APIRouter()


@router.get("/retention/metrics", response_model=RetentionMetricsPublic, response_model_by_alias=True, tags=["metrics"])
async def retention_metrics(
    request: Request,
    session: SessionDep,
    from_: Annotated[UtcDatetime | None, Query(alias="from", description="default: 90 days before to")] = None,
    to: Annotated[UtcDatetime | None, Query(description="default: now")] = None,
    group_by: Literal["tier", "segment", "rule"] | None = None,
) -> RetentionMetricsPublic:
    """Churn, retention and save rates, alert precision and recall, warning time and uplift, for [from, to)."""
    settings: RetentionSettings = request.app.state.settings
    end = to or utc_now()
    start = from_ or end - timedelta(days=90)
    await without_jit(session)
    overall, groups = await outcomes.metrics(
        session=session,
        start=start,
        end=end,
        group_by=group_by,
        lookback=timedelta(days=settings.warning_lookback_days),
    )
    return RetentionMetricsPublic.model_validate(
        {
            "from_": start,
            "to": end,
            "group_by": group_by,
            "overall": asdict(overall),
            "groups": [asdict(g) for g in groups],
        }
    )
