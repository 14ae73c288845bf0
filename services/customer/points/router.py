"""Loyalty points routes: GET/POST /customers/{id}/points (docs/loyalty-points.md). Each commits once."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.customer.points import service as points
from services.customer.points.models import PointsAdjustment, PointsBooked, PointsPublic
from services.customer.settings import CustomerSettings

router = APIRouter(prefix="/customers", tags=["loyalty-points"])


def _settings(request: Request) -> CustomerSettings:
    settings: CustomerSettings = request.app.state.settings
    return settings


@router.get("/{customer_id}/points", response_model=PointsPublic)
async def get_points(
    customer_id: str, session: SessionDep, request: Request, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> PointsPublic:
    """The points balance, lifetime points, member tier with its benefits, the next tier, and the ledger
    (newest first, paged)."""
    tiers = _settings(request).loyalty_tiers
    return await points.read(session=session, customer_id=customer_id, tiers=tiers, limit=limit, offset=offset)


@router.post(
    "/{customer_id}/points",
    response_model=PointsBooked,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PointsBooked, "description": "a replay of an entry already booked (replayed: true)"}},
)
async def post_points(
    customer_id: str, body: PointsAdjustment, session: SessionDep, request: Request, response: Response
) -> PointsBooked:
    """Book one ledger entry (default kind ``adjust``, signed). Idempotent by (``source``, ``source_ref``):
    a repeat answers 200 with the earlier entry and changes nothing. 409 when a redemption, expiry or
    negative adjustment exceeds the balance (field ``amount``), when the reference was booked as another
    entry (field ``source_ref``), or for an erased customer."""
    result = await points.adjust(
        session=session, customer_id=customer_id, body=body, tiers=_settings(request).loyalty_tiers
    )
    await session.commit()
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return result
