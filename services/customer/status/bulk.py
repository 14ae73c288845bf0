"""POST /customers/status/bulk: many status changes in one request, e.g. the churn history of an import.

Each row is one POST /customers/{id}/status: validated and decided on its own (a refused row writes nothing
and undoes nothing else), against the state the rows before it left. The accepted rows are written together
(customers, status history, outbox events) in the request's one transaction. Each changed row emits the same
customer.status_changed event with the same churn facts as the single route, so the other services cannot
tell a bulk change from a live one. A row that asks for the status the customer already has, with the same
churn details, is ``unchanged`` and writes nothing: a resent row is harmless. An Idempotency-Key (per
caller) makes the whole request safe to resend: the same key and body answer the first report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import CustomerStatus
from contracts.customer import CustomerStatusChanged
from servicekit.auth import PRINCIPAL_HEADER
from servicekit.clock import utc_now
from servicekit.deps import SessionDep
from servicekit.digest import request_digest
from servicekit.outbox import enqueue_many
from servicekit.problems import Problem, field_error, not_found, validation_errors
from servicekit.sql import chunks
from servicekit.turns import ROWS_PER_TURN, give_turn, in_turns
from services.customer.common import scoped_key
from services.customer.customers.models import MAX_BULK_ROWS, BulkReply, Customer
from services.customer.status import lifecycle
from services.customer.status.models import StatusChange, StatusChangeRequest

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


@dataclass(slots=True)
class _State:
    """A customer's lifecycle columns as the rows before this one left them (nothing written yet)."""

    status: CustomerStatus
    churned_at: date | None
    churn_reason: str | None
    version: int
    erased: bool
    changed: bool = False


async def _lock_states(session: AsyncSession, ids: Sequence[str]) -> dict[str, _State]:
    """The named customers' lifecycle columns, their rows locked (PostgreSQL) until the transaction ends;
    in id order, so two bulk requests over the same customers cannot deadlock."""
    table = Customer.__table__  # type: ignore[attr-defined]
    columns = (table.c.id, table.c.status, table.c.churned_at, table.c.churn_reason, table.c.version, table.c.erased_at)
    states: dict[str, _State] = {}
    for chunk in chunks(sorted(ids)):
        query = select(*columns).where(table.c.id.in_(chunk)).order_by(table.c.id).with_for_update()
        for cid, status, churned_at, reason, version, erased_at in (await session.execute(query)).all():
            states[cid] = _State(CustomerStatus(status), churned_at, reason, version, erased_at is not None)
    return states


def _refusal(state: _State, row: StatusRow, today: date) -> Problem | None:
    """Why POST /customers/{id}/status would refuse this row, as the same problem; None if it would apply it."""
    if state.erased:
        return Problem(
            409,
            "Customer erased",
            "This customer's personal data was erased; the record can no longer change.",
            code="erased",
        )
    try:
        lifecycle.check_transition(state.status, row.status)
    except lifecycle.InvalidTransition as exc:
        return Problem(409, "Invalid status transition", str(exc), code="invalid_transition")
    problems = lifecycle.check_details(row.status, reason=row.reason, churned_at=row.churned_at, today=today)
    if problems:
        return Problem(
            422,
            "Invalid request",
            "; ".join(f"{p.field}: {p.message}" for p in problems),
            code="validation",
            errors=[field_error(p.field, p.message) for p in problems],
        )
    return None


def _reason_facts(reason: str | None) -> dict[str, Any]:
    """The side and voluntariness the event carries next to a churn reason, as the single route sends them."""
    facts = lifecycle.facts_of(reason)
    return {"side": facts.side.value, "voluntary": facts.voluntary} if facts else {}


def _rejected(index: int, customer_id: str, problem: Problem) -> StatusRowResult:
    message = problem.detail or problem.title
    return StatusRowResult(
        index=index,
        status="rejected",
        customer_id=customer_id,
        code=problem.code or str(problem.status),
        errors=problem.errors or [field_error("status", message)],
    )


async def change_statuses(*, session: AsyncSession, rows: list[Any]) -> BulkStatusReport:
    """Apply every valid row in request order (a customer named twice moves twice); never commits.

    Set-based: one locking read of every named customer, the rows decided in memory in request order (each
    against the state the rows before it left), then one UPDATE of the changed customers, one multi-row
    INSERT of their status history and one outbox write of their events. A refused row writes nothing.
    """
    results: list[StatusRowResult] = []
    valid: list[tuple[int, StatusRow]] = []
    async for start, part in in_turns(rows):  # the loop's other tasks run between two slices
        for index, raw in enumerate(part, start):
            try:
                valid.append((index, StatusRow.model_validate(raw)))
            except ValidationError as exc:
                errors = [
                    {**e, "field": "row"} if e["field"] == "body" else e for e in validation_errors(list(exc.errors()))
                ]
                results.append(StatusRowResult(index=index, status="rejected", code="validation", errors=errors))
    states = await _lock_states(session, list({row.customer_id for _, row in valid}))
    now = utc_now()
    history: list[dict[str, Any]] = []
    events: list[CustomerStatusChanged] = []
    for decided, (index, row) in enumerate(valid):
        if decided and decided % ROWS_PER_TURN == 0:
            await give_turn()
        state = states.get(row.customer_id)
        if state is None:
            results.append(_rejected(index, row.customer_id, not_found("Customer", row.customer_id)))
            continue
        if not state.erased and _same_state(state.status, state.churned_at, state.churn_reason, row):
            results.append(
                StatusRowResult(index=index, status="unchanged", customer_id=row.customer_id, version=state.version)
            )
            continue
        refusal = _refusal(state, row, now.date())
        if refusal is not None:
            results.append(_rejected(index, row.customer_id, refusal))
            continue
        previous = state.status
        reason = row.reason.value if row.reason is not None else None
        state.status, state.version, state.changed = row.status, state.version + 1, True
        if row.status == CustomerStatus.churned:
            state.churned_at, state.churn_reason = row.churned_at, reason
        history.append(
            {
                "customer_id": row.customer_id,
                "previous_status": previous.value,
                "status": row.status.value,
                "reason": reason,
                "churned_at": row.churned_at,
                "note": row.note,
                "version": state.version,
                "changed_at": now,
            }
        )
        events.append(
            CustomerStatusChanged(
                customer_id=row.customer_id,
                previous_status=previous,
                status=row.status,
                reason=reason,
                **_reason_facts(reason),
                churned_at=row.churned_at,
                changed_at=now,
                version=state.version,
            )
        )
        results.append(
            StatusRowResult(index=index, status="changed", customer_id=row.customer_id, version=state.version)
        )
    if events:
        await _write(session, states, history, now)
        async for _, part in in_turns(events):
            await enqueue_many(session, part)
    results.sort(key=lambda r: r.index)
    return BulkStatusReport(
        changed=sum(r.status == "changed" for r in results),
        unchanged=sum(r.status == "unchanged" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        rows=results,
    )


async def _write(session: AsyncSession, states: dict[str, _State], history: list[dict[str, Any]], now: Any) -> None:
    """The changed customers' final states in one executemany UPDATE by id, then the history in one INSERT."""
    table = Customer.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            churned_at=bindparam("b_churned_at"),
            churn_reason=bindparam("b_reason"),
            version=bindparam("b_version"),
            status_changed_at=now,
            updated_at=now,
        )
    )
    await session.execute(
        statement,
        [
            {
                "b_id": cid,
                "b_status": s.status.value,
                "b_churned_at": s.churned_at,
                "b_reason": s.churn_reason,
                "b_version": s.version,
            }
            for cid, s in states.items()
            if s.changed
        ],
    )
    await session.execute(insert(StatusChange.__table__), history)  # type: ignore[attr-defined]


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
