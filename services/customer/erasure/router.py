"""GDPR erasure routes: DELETE /customers/{id} and its receipts. Each route commits once."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from servicekit.deps import SessionDep
from services.customer.erasure import service
from services.customer.erasure.models import ErasureStatus
from services.customer.http import settings_of

router = APIRouter(prefix="/customers", tags=["customers"])


@router.delete(
    "/{customer_id}",
    response_model=ErasureStatus,
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "personal data erased here; Location: the erasure receipts"}},
)
async def erase_customer(customer_id: str, request: Request, session: SessionDep, response: Response) -> ErasureStatus:
    """GDPR erasure: removes the personal data now and asks every service to erase theirs.

    Accepted (202) because the other services confirm later; follow Location to see their receipts.
    Repeating it is harmless.
    """
    settings = settings_of(request)
    await service.erase_customer(
        session=session, customer_id=customer_id, keep_attributes=settings.erasure_keep_attributes
    )
    await session.commit()
    receipt = await service.erasure_status(
        session=session, customer_id=customer_id, expected_services=settings.erasure_services
    )
    response.headers["Location"] = f"/customers/{customer_id}/erasure"
    return receipt


@router.get("/{customer_id}/erasure", response_model=ErasureStatus)
async def erasure_receipts(customer_id: str, request: Request, session: SessionDep) -> ErasureStatus:
    """Which services have confirmed the customer's erasure; ``complete`` once all expected ones have."""
    return await service.erasure_status(
        session=session, customer_id=customer_id, expected_services=settings_of(request).erasure_services
    )
