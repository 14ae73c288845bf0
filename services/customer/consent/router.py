"""Consent routes: GET/PUT /customers/{id}/consent, its audit trail, and the bulk import. Each commits once."""

from __future__ import annotations

from fastapi import APIRouter, Request

from servicekit.auth import PRINCIPAL_HEADER
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.customer.common import scoped_key
from services.customer.consent import service as consent
from services.customer.consent.models import (
    ConsentChangePublic,
    ConsentChangesPage,
    ConsentImport,
    ConsentImportReport,
    ConsentPublic,
    ConsentUpdate,
)
from services.customer.http import IdempotencyKeyHeader

router = APIRouter(prefix="/customers", tags=["consent"])


@router.post("/consent/bulk", response_model=ConsentImportReport, response_model_exclude_none=True)
async def bulk_consent(
    data: ConsentImport, session: SessionDep, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> ConsentImportReport:
    """Up to 5000 consent rows (a customer by ``customer_id`` or ``external_ref``, one channel each), with
    a result per row in request order: ``applied``, ``unchanged`` (equal to or older than what is
    recorded) or ``rejected`` with its errors. Send an Idempotency-Key to make a retry replay the report."""
    key = scoped_key(idempotency_key, request.headers.get(PRINCIPAL_HEADER, "")) if idempotency_key else None
    report = await consent.bulk_import(session=session, rows=data.rows, idempotency_key=key)
    await session.commit()
    return report


@router.get("/{customer_id}/consent", response_model=ConsentPublic)
async def get_consent(customer_id: str, session: SessionDep) -> ConsentPublic:
    """The customer's consent per channel and contact preferences (time zone, frequency cap, quiet hours)."""
    return await consent.read(session=session, customer_id=customer_id)


@router.put("/{customer_id}/consent", response_model=ConsentPublic)
async def put_consent(customer_id: str, body: ConsentUpdate, session: SessionDep) -> ConsentPublic:
    """Set the consent of the channels given (others keep theirs) and the preference fields sent (null
    clears one). A change older than the recorded one for its channel is ignored. 409 for an erased
    customer."""
    result = await consent.update(session=session, customer_id=customer_id, body=body)
    await session.commit()
    return result


@router.get("/{customer_id}/consent/history", response_model=ConsentChangesPage)
async def consent_history(
    customer_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> ConsentChangesPage:
    """The consent audit trail: every change with its source and time, newest first."""
    items, total = await consent.history(session=session, customer_id=customer_id, limit=limit, offset=offset)
    return ConsentChangesPage(
        items=[ConsentChangePublic.model_validate(i) for i in items], total=total, limit=limit, offset=offset
    )
