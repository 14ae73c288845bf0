"""HTTP routes of the scoring service: scores, which change only through events."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from contracts.common import CustomerStatus
from contracts.customer import VALUE_TIERS
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.scoring.scores import reads as service
from services.scoring.scores.models import (
    CustomerScoresPublic,
    RankedScoresPublic,
    ScoreHistoryPublic,
    ScoreSummaryPublic,
)

router = APIRouter(tags=["scores"])


@router.get("/customers/{customer_id}/scores", response_model=CustomerScoresPublic)
async def get_customer_scores(customer_id: str, session: SessionDep) -> CustomerScoresPublic:
    """Current churn risk and health with their factors, and the features behind them."""
    return await service.customer_scores(session=session, customer_id=customer_id)


@router.get("/customers/{customer_id}/scores/history", response_model=ScoreHistoryPublic)
async def get_score_history(
    customer_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> ScoreHistoryPublic:
    """Every rescoring of the customer, newest first, with the event that caused it."""
    return await service.score_history(session=session, customer_id=customer_id, limit=limit, offset=offset)


@router.get("/scores", response_model=RankedScoresPublic)
async def list_scores(
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    min_risk: Annotated[float | None, Query(ge=0, le=1, description="only churn risk at or above this")] = None,
    segment: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[CustomerStatus | None, Query(description="customer status")] = None,
    tier: Annotated[
        Literal[VALUE_TIERS] | None,  # type: ignore[valid-type]
        Query(description="value tier"),
    ] = None,
    stage: Annotated[
        Literal["exploration", "formation", "stability", "decline"] | None, Query(description="lifecycle stage")
    ] = None,
    sort: Annotated[Literal["risk", "value_at_risk"], Query(description="value_at_risk = CLV x churn risk")] = "risk",
) -> RankedScoresPublic:
    """Customers ranked by churn risk or value at risk, highest first ("which platinum customers are most at
    risk?": ?tier=platinum&sort=value_at_risk)."""
    return await service.ranked_scores(
        session=session,
        limit=limit,
        offset=offset,
        min_risk=min_risk,
        segment=segment,
        status=None if status is None else status.value,
        tier=tier,
        stage=stage,
        sort=sort,
    )


@router.get("/scores/summary", response_model=ScoreSummaryPublic)
async def get_score_summary(
    session: SessionDep, segment: Annotated[str | None, Query(max_length=100)] = None
) -> ScoreSummaryPublic:
    """The customer pyramid (customers and share of value per tier), the lifecycle funnel and the churn-risk
    distribution: aggregates over every customer's current score, no customer listed."""
    return await service.score_summary(session=session, segment=segment)
