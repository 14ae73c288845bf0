"""Status routes: POST /customers/{id}/status and the status history. Each route commits once."""

from __future__ import annotations

from fastapi import APIRouter, Response

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.customer.customers.models import CustomerPublic
from services.customer.http import IfMatchHeader, expected_versions, with_etag
from services.customer.status import service
from services.customer.status.models import StatusChangePublic, StatusChangeRequest, StatusHistoryPage

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("/{customer_id}/status", response_model=CustomerPublic)
async def change_status(
    customer_id: str,
    body: StatusChangeRequest,
    session: SessionDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> CustomerPublic:
    """Move the customer along prospect -> active -> churned -> won_back (-> churned ...).

    Churning needs ``reason`` and ``churned_at``. A move outside the lifecycle is a 409 saying why.
    """
    customer = await service.change_status(
        session=session,
        customer_id=customer_id,
        request=body,
        expected=expected_versions(if_match, None, required=False),
    )
    await session.commit()
    with_etag(response, customer.version)
    return CustomerPublic.of(customer)


@router.get("/{customer_id}/status-history", response_model=StatusHistoryPage)
async def status_history(
    customer_id: str,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> StatusHistoryPage:
    """The customer's status changes, newest first (the first one is the status it was created in)."""
    items, total = await service.status_history(session=session, customer_id=customer_id, limit=limit, offset=offset)
    return StatusHistoryPage(
        items=[StatusChangePublic.model_validate(i, from_attributes=True) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )
