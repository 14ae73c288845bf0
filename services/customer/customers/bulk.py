"""Customer bulk import: every row validated, the valid new ones inserted in multi-row statements, a report
on each row. Never commits (the route does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.problems import validation_errors
from servicekit.sql import chunks
from servicekit.turns import in_turns
from services.customer.customers.models import (
    BulkReport,
    BulkRowResult,
    Customer,
    CustomerCreate,
)
from services.customer.customers.service import insert_new


def _row_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # A row that is not an object at all has an empty location: name the row itself.
    return [{**e, "field": "row"} if e["field"] == "body" else e for e in validation_errors(list(exc.errors()))]


async def _ids_by_external_ref(session: AsyncSession, refs: Iterable[str]) -> dict[str, str]:
    refs = list(refs)
    found: dict[str, str] = {}
    for chunk in chunks(refs):
        query = select(Customer.external_ref, Customer.id).where(col(Customer.external_ref).in_(chunk))
        found.update({ref: cid for ref, cid in (await session.execute(query)).all()})
    return found


async def bulk_import(*, session: AsyncSession, rows: Sequence[Any], attempts: int = 3) -> BulkReport:
    """Validate every row, insert the valid new ones in multi-row statements, and report on each row.

    Invalid rows are rejected before anything is written, so they leave nothing behind and cannot
    undo the good rows. A row whose external_ref is known (in the database, or earlier in this
    request) is "existing" with that customer's id. A concurrent import that inserts one of the same
    external_refs first only makes this one re-check them (the insert runs in a savepoint).
    """
    results: dict[int, BulkRowResult] = {}
    valid: list[tuple[int, CustomerCreate]] = []
    async for start, part in in_turns(rows):  # the loop's other tasks run between two slices
        for index, row in enumerate(part, start):
            try:
                valid.append((index, CustomerCreate.model_validate(row)))
            except ValidationError as exc:
                results[index] = BulkRowResult(index=index, status="rejected", errors=_row_errors(exc))

    for attempt in range(1, attempts + 1):
        known = await _ids_by_external_ref(session, {d.external_ref for _, d in valid if d.external_ref})
        pending: list[tuple[int, CustomerCreate]] = []
        first_in_request: dict[str, int] = {}
        repeats: list[tuple[int, str]] = []
        for index, data in valid:
            ref = data.external_ref
            if ref is not None and ref in known:
                results[index] = BulkRowResult(index=index, status="existing", id=known[ref])
            elif ref is not None and ref in first_in_request:
                repeats.append((index, ref))
            else:
                if ref is not None:
                    first_in_request[ref] = len(pending)
                pending.append((index, data))
        try:
            async with session.begin_nested():
                inserted = await insert_new(session, [data for _, data in pending])
        except IntegrityError:
            if attempt == attempts:
                raise
            continue
        for (index, _), values in zip(pending, inserted, strict=True):
            results[index] = BulkRowResult(index=index, status="created", id=values["id"])
        for index, ref in repeats:
            results[index] = BulkRowResult(index=index, status="existing", id=inserted[first_in_request[ref]]["id"])
        break

    ordered = [results[i] for i in range(len(rows))]
    return BulkReport(
        created=sum(r.status == "created" for r in ordered),
        existing=sum(r.status == "existing" for r in ordered),
        rejected=sum(r.status == "rejected" for r in ordered),
        rows=ordered,
    )
