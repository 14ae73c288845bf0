"""POST /customers/status/bulk: many status changes in one request, e.g. the churn history of an import.

Each row is one POST /customers/{id}/status: validated on its own, applied in a savepoint (a refused row
writes nothing and undoes nothing else), emitting the same customer.status_changed event with the same
churn facts, so the other services cannot tell a bulk change from a live one. A row that asks for the
status the customer already has, with the same churn details, is ``unchanged`` and writes nothing: a
resent row is harmless. An Idempotency-Key (per caller) makes the whole request safe to resend: the same
key and body answer the first report.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.auth import PRINCIPAL_HEADER
from servicekit.deps import SessionDep
from servicekit.digest import request_digest
from servicekit.events.contracts.common import CustomerStatus
from servicekit.problems import Problem, field_error, validation_errors
from services.customer.common import scoped_key
from services.customer.customers.models import MAX_BULK_ROWS, BulkReply
from services.customer.customers.service import get_customer
from services.customer.status.models import StatusChangeRequest
from services.customer.status.service import change_status

router = APIRouter(prefix="/customers", tags=["customers"])
ROUTE = "customers.status.bulk"


class StatusRow(StatusChangeRequest):
    customer_id: str = Field(min_length=1, max_length=36)


class BulkStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Any, not a model: a bad row is rejected on its own, not the whole request.
    rows: list[Any] = Field(
        min_length=1,
        max_length=MAX_BULK_ROWS,
        description="as for POST /customers/{id}/status, each with its customer_id",
    )


class StatusRowResult(BaseModel):
    index: int
    status: str = Field(description="changed | unchanged | rejected")
    customer_id: str | None = None
    version: int | None = Field(default=None, description="the customer's version after the row")
    code: str | None = Field(default=None, description="why a row was rejected: not_found, invalid_transition, ...")
    errors: list[dict[str, Any]] | None = None


class BulkStatusReport(BaseModel):
    changed: int
    unchanged: int
    rejected: int
    rows: list[StatusRowResult]


def request_hash(rows: list[Any]) -> str:
    return request_digest(rows)


def _same_state(status: CustomerStatus, churned_at: Any, reason: Any, row: StatusRow) -> bool:
    if status != row.status:
        return False
    if row.status != CustomerStatus.churned:
        return True
    wanted = row.reason.value if row.reason is not None else None
    return churned_at == row.churned_at and (str(reason.value if hasattr(reason, "value") else reason)) == str(wanted)


async def change_statuses(*, session: AsyncSession, rows: list[Any]) -> BulkStatusReport:
    """Apply every valid row in request order (a customer named twice moves twice); never commits."""
    results: list[StatusRowResult] = []
    for index, raw in enumerate(rows):
        try:
            row = StatusRow.model_validate(raw)
        except ValidationError as exc:
            errors = [
                {**e, "field": "row"} if e["field"] == "body" else e for e in validation_errors(list(exc.errors()))
            ]
            results.append(StatusRowResult(index=index, status="rejected", code="validation", errors=errors))
            continue
        try:
            async with session.begin_nested():
                customer = await get_customer(session=session, customer_id=row.customer_id, for_update=True)
                if customer.erased_at is None and _same_state(
                    CustomerStatus(customer.status), customer.churned_at, customer.churn_reason, row
                ):
                    results.append(
                        StatusRowResult(
                            index=index, status="unchanged", customer_id=customer.id, version=customer.version
                        )
                    )
                    continue
                request = StatusChangeRequest.model_validate(row.model_dump(exclude={"customer_id"}))
                changed = await change_status(session=session, customer_id=row.customer_id, request=request)
                results.append(
                    StatusRowResult(index=index, status="changed", customer_id=changed.id, version=changed.version)
                )
        except Problem as problem:
            message = problem.detail or problem.title
            results.append(
                StatusRowResult(
                    index=index,
                    status="rejected",
                    customer_id=row.customer_id,
                    code=problem.code or str(problem.status),
                    errors=problem.errors or [field_error("status", message)],
                )
            )
    return BulkStatusReport(
        changed=sum(r.status == "changed" for r in results),
        unchanged=sum(r.status == "unchanged" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        rows=results,
    )


@router.post("/status/bulk", response_model=BulkStatusReport, response_model_exclude_none=True)
async def bulk_status(
    body: BulkStatus,
    session: SessionDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="makes a resent request safe: it answers the first report"),
    ] = None,
) -> BulkStatusReport:
    """Up to 5000 status changes (each as for POST /customers/{id}/status, plus its ``customer_id``),
    with a report per row in request order: ``changed``, ``unchanged`` (the customer already had that
    status and churn details; nothing written) or ``rejected`` with ``code`` and the fields at fault.
    The changed rows emit the same ``customer.status_changed`` events as single changes."""
    digest = request_hash(body.rows)
    stored_key = None
    if idempotency_key is not None:
        stored_key = scoped_key(idempotency_key, request.headers.get(PRINCIPAL_HEADER, ""))
        seen = await session.get(BulkReply, stored_key)
        if seen is not None:
            if seen.route != ROUTE or seen.request_hash != digest:
                raise Problem(
                    422,
                    "Idempotency key reused",
                    "This Idempotency-Key was used before with a different request; use a new key.",
                    code="idempotency_key_reused",
                    errors=[field_error("header.idempotency-key", "already used with a different request")],
                )
            return BulkStatusReport.model_validate(seen.report)
    report = await change_statuses(session=session, rows=body.rows)
    if stored_key is not None:
        session.add(BulkReply(key=stored_key, route=ROUTE, request_hash=digest, report=report.model_dump(mode="json")))
    try:
        await session.commit()
    except IntegrityError:
        # The same key was sent twice at once: the first commit won; this one changed nothing.
        await session.rollback()
        raise Problem(
            409, "Conflict", "A concurrent request with the same Idempotency-Key is under way; retry.", code="conflict"
        ) from None
    return report
