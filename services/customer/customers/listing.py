"""The customer list: filters, keyset cursors and one page of customers."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.common import CustomerStatus
from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from services.customer.customers import attributes as attrs
from services.customer.customers.models import Customer, CustomerAttribute, CustomerTag

SORTS = ("created_at", "-created_at", "name", "-name")


@dataclass(frozen=True, slots=True)
class CustomerFilters:
    statuses: Sequence[CustomerStatus] = ()
    kind: str | None = None
    segment: str | None = None
    owners: Sequence[str] = ()  # any of them (a manager's team)
    external_ref: str | None = None
    tags: Sequence[str] = ()  # all of them
    attributes: Sequence[tuple[str, str]] = ()  # (key, value as text), all of them
    q: str | None = None  # name or e-mail contains, case-insensitive
    include_erased: bool = False


def _conditions(filters: CustomerFilters) -> list[Any]:
    where: list[Any] = []
    if filters.statuses:
        where.append(col(Customer.status).in_([s.value for s in filters.statuses]))
    if filters.kind is not None:
        where.append(Customer.kind == filters.kind)
    if filters.segment is not None:
        where.append(Customer.segment == filters.segment)
    if filters.owners:
        where.append(col(Customer.owner).in_(filters.owners))
    if filters.external_ref is not None:
        where.append(Customer.external_ref == filters.external_ref)
    for tag in filters.tags:
        where.append(
            exists().where(and_(col(CustomerTag.customer_id) == col(Customer.id), col(CustomerTag.tag) == tag))
        )
    for key, raw in filters.attributes:
        matches = [
            and_(col(CustomerAttribute.type) == kind, col(CustomerAttribute.value) == text)
            for kind, text in attrs.query_candidates(raw)
        ]
        where.append(
            exists().where(
                and_(
                    col(CustomerAttribute.customer_id) == col(Customer.id),
                    col(CustomerAttribute.key) == key,
                    or_(*matches),
                )
            )
        )
    if filters.q:
        needle = filters.q.lower()
        where.append(
            or_(
                func.lower(col(Customer.name)).contains(needle, autoescape=True),
                func.lower(col(Customer.email)).contains(needle, autoescape=True),
            )
        )
    if not filters.include_erased:
        where.append(col(Customer.erased_at).is_(None))
    return where


def _invalid_cursor(message: str) -> Problem:
    return Problem(422, "Invalid request", message, code="validation", errors=[field_error("query.cursor", message)])


def encode_cursor(sort: str, customer: Customer) -> str:
    field = sort.lstrip("-")
    value = customer.created_at.isoformat() if field == "created_at" else customer.name
    raw = orjson.dumps({"s": sort, "v": value, "id": customer.id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        cursor_sort, value, last_id = raw["s"], raw["v"], raw["id"]
        if not isinstance(value, str) or not isinstance(last_id, str):
            raise ValueError
        if cursor_sort.lstrip("-") == "created_at":
            value = as_utc(datetime.fromisoformat(value))
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise _invalid_cursor("Not a cursor this service issued") from None
    if cursor_sort != sort:
        raise _invalid_cursor(f"The cursor belongs to sort={cursor_sort}; send the same sort with it")
    return value, last_id


async def list_customers(
    *,
    session: AsyncSession,
    filters: CustomerFilters,
    sort: str = "-created_at",
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
) -> tuple[list[Customer], int, str | None]:
    """A page of customers, the total number of matches, and the cursor of the next page (or None).

    Ordered by the sort key, then id, so pages never overlap or skip rows, even between equal names.
    """
    if sort not in SORTS:
        raise Problem(
            422, "Invalid request", code="validation", errors=[field_error("query.sort", f"one of {', '.join(SORTS)}")]
        )
    where = _conditions(filters)
    total = (await session.execute(select(func.count()).select_from(Customer).where(*where))).scalar_one()

    descending = sort.startswith("-")
    key = col(Customer.created_at) if sort.lstrip("-") == "created_at" else col(Customer.name)
    ident = col(Customer.id)
    page_where = list(where)
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort)
        if descending:
            page_where.append(or_(key < value, and_(key == value, ident < last_id)))
        else:
            page_where.append(or_(key > value, and_(key == value, ident > last_id)))
    order = (key.desc(), ident.desc()) if descending else (key.asc(), ident.asc())
    query = select(Customer).where(*page_where).order_by(*order).offset(offset).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    items = rows[:limit]
    next_cursor = encode_cursor(sort, items[-1]) if len(rows) > limit else None
    return items, total, next_cursor
