"""Bulk import of interactions (POST /interactions/bulk): rows validated one by one, customers checked in
batches, the accepted rows stored in one transaction. Never commits."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from servicekit.outbox.writer import write_at_commit
from servicekit.problems import field_error, validation_errors
from servicekit.sql import chunks, on_postgres
from servicekit.turns import in_turns
from services.interaction.interactions.models import BulkReport, BulkRow, BulkRowStatus, InteractionCreate
from services.interaction.interactions.store import store_interactions
from services.interaction.replica.directory import CustomerBatchLookup, CustomerServiceUnavailable
from services.interaction.replica.models import KnownCustomer

log = logging.getLogger("interaction.service")


Validated = tuple[dict[int, InteractionCreate], dict[int, list[dict[str, str]]]]


def validate_rows(items: Sequence[Any], start: int = 0) -> Validated:
    """Validate each row on its own: the valid ones by index, and the errors of the others by index
    (indexes counted from `start`)."""
    valid: dict[int, InteractionCreate] = {}
    errors: dict[int, list[dict[str, str]]] = {}
    for index, item in enumerate(items, start):
        if not isinstance(item, dict):
            errors[index] = [field_error("body", "must be an object")]
            continue
        try:
            valid[index] = InteractionCreate.model_validate(item)
        except ValidationError as exc:
            errors[index] = validation_errors(list(exc.errors()))
    return valid, errors


async def validate_in_turns(items: Sequence[Any]) -> Validated:
    """validate_rows, a slice at a time, the event loop's other tasks running between two slices."""
    valid: dict[int, InteractionCreate] = {}
    errors: dict[int, list[dict[str, str]]] = {}
    async for start, part in in_turns(items):
        part_valid, part_errors = validate_rows(part, start)
        valid.update(part_valid)
        errors.update(part_errors)
    return valid, errors


@dataclass(frozen=True, slots=True)
class _CustomerProblem:
    message: str
    retryable: bool = False  # the cause passes: the same row can be sent again


async def _customer_problems(
    session: AsyncSession, customer_ids: Sequence[str], lookup_many: CustomerBatchLookup
) -> dict[str, _CustomerProblem]:
    """Why each customer of a bulk request cannot take interactions (unknown, erased, unreachable).

    The replica answers in a few queries; the ids it has not seen are asked of the customer service in
    one call for the whole request (which waits, bounded, for an unavailable customer service), never
    once per row or per customer. So a history posted right after its customers is accepted however far
    the replica lags; a row is rejected for good only when its customer does not exist or was erased.
    The answers are not written to the replica here: its rows are also written by the event consumer,
    and locking hundreds of them in one long request would deadlock with the consumer's batches.
    """
    known: dict[str, bool] = {}  # customer id -> erased
    for chunk in chunks(list(customer_ids)):
        rows = await session.execute(
            select(KnownCustomer.customer_id, KnownCustomer.erased).where(col(KnownCustomer.customer_id).in_(chunk))
        )
        known.update({customer_id: erased for customer_id, erased in rows})
    missing = [c for c in customer_ids if c not in known]
    problems: dict[str, _CustomerProblem] = {}
    if missing:
        try:
            answers = await lookup_many(missing)
        except CustomerServiceUnavailable:
            for customer_id in missing:
                problems[customer_id] = _CustomerProblem(
                    "customer not known here yet and the customer service is unavailable; retry", retryable=True
                )
            answers = {}
        for customer_id in missing:
            if customer_id in problems:
                continue
            answer = answers.get(customer_id)
            if answer is None:
                problems[customer_id] = _CustomerProblem("unknown customer")
            else:
                known[customer_id] = answer.erased
    for customer_id, erased in known.items():
        if erased:
            problems[customer_id] = _CustomerProblem("the customer's data was erased")
    return problems


def _conflict(external_id: str, other_id: str) -> list[dict[str, str]]:
    return [field_error("external_id", f"{external_id!r} already identifies another interaction ({other_id})")]


async def bulk_import(
    *, session: AsyncSession, items: Sequence[Any], sla_hours: Mapping[str, float], lookup_many: CustomerBatchLookup
) -> BulkReport:
    """Import many interactions in one transaction, row by row; a rejected row writes nothing.

    Idempotent by external_id (a repeated row is reported `existing`, also within one request); the
    created rows emit the same events as single posts.
    """
    started = time.perf_counter()
    # Its events are enqueued a slice at a time. On PostgreSQL they still go to the outbox in one INSERT at
    # commit (one round trip); SQLite runs in this thread, where an INSERT per slice keeps the loop free.
    if on_postgres(session):
        write_at_commit(session)
    valid, errors = await validate_in_turns(items)
    results: dict[int, BulkRow] = {
        i: BulkRow(index=i, status=BulkRowStatus.rejected, errors=e) for i, e in errors.items()
    }

    customers = sorted({data.customer_id for data in valid.values()})
    validated = time.perf_counter()
    customer_problems = await _customer_problems(session, customers, lookup_many)
    checked = time.perf_counter()

    accepted: dict[int, InteractionCreate] = {}
    for index, data in valid.items():
        problem = customer_problems.get(data.customer_id)
        if problem is None:
            accepted[index] = data
        else:
            results[index] = BulkRow(
                index=index,
                status=BulkRowStatus.rejected,
                errors=[field_error("customer_id", problem.message)],
                retryable=problem.retryable,
            )
    for index, stored in (await store_interactions(session, accepted, sla_hours)).items():
        if stored.status == BulkRowStatus.rejected:
            external_id = accepted[index].external_id
            assert external_id is not None  # only an external_id conflict rejects a row here
            results[index] = BulkRow(index=index, status=stored.status, errors=_conflict(external_id, stored.id))
        else:
            results[index] = BulkRow(index=index, status=stored.status, id=stored.id)

    rows = [results[i] for i in range(len(items))]
    counts = Counter(row.status for row in rows)
    log.info(
        "bulk import",
        extra={
            "rows": len(items),
            "rows_created": counts[BulkRowStatus.created],
            "rows_rejected": counts[BulkRowStatus.rejected],
            "customers": len(customers),
            "validate_s": round(validated - started, 3),
            "customers_s": round(checked - validated, 3),
            "total_s": round(time.perf_counter() - started, 3),
        },
    )
    return BulkReport(
        created=counts[BulkRowStatus.created],
        existing=counts[BulkRowStatus.existing],
        rejected=counts[BulkRowStatus.rejected],
        rows=rows,
    )
