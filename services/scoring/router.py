"""HTTP routes of the scoring service (read-only: scores change only through events)."""

from typing import Annotated

from fastapi import APIRouter, Query

from servicekit.deps import SessionDep
from services.scoring import service
from services.scoring.models import CustomerScoresPublic, RankedScoresPublic, ScoreHistoryPublic

router = APIRouter(tags=["scores"])

MAX_PAGE = 200

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")]
Offset = Annotated[int, Query(ge=0)]


@router.get("/customers/{customer_id}/scores", response_model=CustomerScoresPublic)
async def get_customer_scores(customer_id: str, session: SessionDep) -> CustomerScoresPublic:
    """Current churn risk and health with their factors, and the features behind them."""
    return await service.customer_scores(session=session, customer_id=customer_id)


@router.get("/customers/{customer_id}/scores/history", response_model=ScoreHistoryPublic)
async def get_score_history(
    customer_id: str, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> ScoreHistoryPublic:
    """Every rescoring of the customer, newest first, with the event that caused it."""
    return await service.score_history(session=session, customer_id=customer_id, limit=limit, offset=offset)


@router.get("/scores", response_model=RankedScoresPublic)
async def list_scores(
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    min_risk: Annotated[float | None, Query(ge=0, le=1, description="only churn risk at or above this")] = None,
    segment: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20, description="customer status, e.g. active")] = None,
) -> RankedScoresPublic:
    """Customers ranked by churn risk, highest first."""
    return await service.ranked_scores(
        session=session, limit=limit, offset=offset, min_risk=min_risk, segment=segment, status=status
    )
