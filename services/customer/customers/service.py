"""Customer domain functions: they change state and enqueue events, and never commit.

Events carry ids, codes and classification only; names, e-mail addresses, phone numbers, contacts and
notes stay here (see contracts.customer).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import CustomerCreated, CustomerUpdated
from servicekit.clock import utc_now
from servicekit.outbox import enqueue, enqueue_many
from servicekit.problems import Problem, field_error, not_found
from servicekit.turns import in_turns
from services.customer.common import scoped_key
from services.customer.customers import attributes as attrs
from services.customer.customers.models import (
    BulkReply,
    Customer,
    CustomerAttribute,
    CustomerCreate,
    CustomerTag,
    CustomerUpdate,
    IdempotencyKey,
)
from services.customer.settings import get_settings
from services.customer.status.models import StatusChange, reason_facts

# ---- create ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    customer: Customer
    status_code: int  # 201 created now; a replayed key answers the status code it was first answered with
    replayed: bool = False


def request_hash(data: CustomerCreate) -> str:
    """Hash of the request's meaning (not its bytes), so key order or whitespace do not matter."""
    return hashlib.sha256(orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def external_ref_taken() -> Problem:
    # Nothing about the existing customer (not even its id): it may belong to another owner (OWASP API1).
    return Problem(
        409,
        "External reference taken",
        "A customer with this external_ref exists already. To retry a create safely, send the same "
        "Idempotency-Key; to find your own customer, list customers with ?external_ref=.",
        code="conflict",
        errors=[field_error("external_ref", "already used by another customer")],
    )


async def create_customer(
    *, session: AsyncSession, data: CustomerCreate, idempotency_key: str | None = None, caller: str = ""
) -> Created:
    """Create a customer, idempotently by Idempotency-Key (per caller).

    A key the caller used before with the same request replays the first answer (same customer, same
    status code); with a different request it is a 422. A known external_ref is a 409 that tells nothing
    about the customer holding it.
    """
    digest = request_hash(data) if idempotency_key is not None else ""
    stored_key = scoped_key(idempotency_key, caller) if idempotency_key is not None else None
    if stored_key is not None:
        seen = await session.get(IdempotencyKey, stored_key)
        if seen is not None:
            if seen.request_hash != digest:
                raise Problem(
                    422,
                    "Idempotency key reused",
                    "This Idempotency-Key was used before with a different request; use a new key.",
                    code="idempotency_key_reused",
                    errors=[field_error("header.idempotency-key", "already used with a different request")],
                )
            customer = await get_customer(session=session, customer_id=seen.customer_id)
            if customer.owner != data.owner:
                # Reassigned since: the replay would hand the caller a customer that is no longer theirs.
                raise Problem(
                    409,
                    "Conflict",
                    "The customer this Idempotency-Key created belongs to another owner now.",
                    code="conflict",
                    errors=[field_error("header.idempotency-key", "its customer was reassigned")],
                )
            return Created(customer, seen.status_code, True)

    if data.external_ref is not None and await find_by_external_ref(session=session, external_ref=data.external_ref):
        raise external_ref_taken()
    [values] = await insert_new(session, [data])
    result = Created(await get_customer(session=session, customer_id=values["id"]), 201)
    if stored_key is not None:
        session.add(
            IdempotencyKey(
                key=stored_key,
                request_hash=digest,
                customer_id=result.customer.id,
                status_code=result.status_code,
            )
        )
        await session.flush()
    return result


async def purge_idempotency_keys(*, session: AsyncSession, older_than: datetime) -> int:
    """Forget Idempotency-Keys stored before `older_than`; returns how many. A key used again after
    that is a new request (its external_ref, if any, still finds the customer)."""
    result = await session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < older_than))
    replies = await session.execute(delete(BulkReply).where(col(BulkReply.created_at) < older_than))
    return int(result.rowcount or 0) + int(replies.rowcount or 0)  # type: ignore[attr-defined]


def _row_values(data: CustomerCreate, now: datetime) -> dict[str, Any]:
    """The customers row for a validated request (plain values, ready for a bulk INSERT)."""
    return {
        "id": str(uuid.uuid4()),
        "kind": data.kind.value,
        "name": data.name,
        "email": data.email,
        "phone": data.phone,
        "contacts": [c.model_dump(mode="json") for c in data.contacts],
        "external_ref": data.external_ref,
        "segment": data.segment,
        "owner": data.owner,
        "status": data.status.value,
        "status_changed_at": now,
        "churned_at": data.churned_at,
        "churn_reason": data.churn_reason.value if data.churn_reason else None,
        "tags": list(data.tags),
        "attributes": dict(data.attributes),
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "erased_at": None,
    }


def _tag_rows(customer_id: str, tags: Iterable[str]) -> list[dict[str, Any]]:
    return [{"customer_id": customer_id, "tag": tag} for tag in tags]


def _attribute_rows(customer_id: str, attributes: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, value in attributes.items():
        kind, text = attrs.index_value(value)
        rows.append({"customer_id": customer_id, "key": key, "type": kind, "value": text})
    return rows


async def insert_new(session: AsyncSession, items: Sequence[CustomerCreate]) -> list[dict[str, Any]]:
    """Insert validated customers with their index rows, history and customer.created events in a few
    multi-row statements. Returns the inserted rows' values."""
    now = utc_now()
    rows: list[dict[str, Any]] = []
    async for _, part in in_turns(items):  # a bulk request's rows: the loop's other tasks run between slices
        rows.extend(_row_values(data, now) for data in part)
    if not rows:
        return rows
    await session.execute(insert(Customer.__table__), rows)  # type: ignore[attr-defined]
    tags = [t for r in rows for t in _tag_rows(r["id"], r["tags"])]
    if tags:
        await session.execute(insert(CustomerTag.__table__), tags)  # type: ignore[attr-defined]
    attributes = [a for r in rows for a in _attribute_rows(r["id"], r["attributes"])]
    if attributes:
        await session.execute(insert(CustomerAttribute.__table__), attributes)  # type: ignore[attr-defined]
    history = [
        {
            "customer_id": r["id"],
            "previous_status": None,
            "status": r["status"],
            "reason": r["churn_reason"],
            "churned_at": r["churned_at"],
            "note": data.churn_note,
            "version": 1,
            "changed_at": now,
        }
        for r, data in zip(rows, items, strict=True)
    ]
    await session.execute(insert(StatusChange.__table__), history)  # type: ignore[attr-defined]
    async for _, created in in_turns(rows):
        await enqueue_many(session, _created_events(created, now))
    return rows


def _created_events(rows: Sequence[dict[str, Any]], now: datetime) -> list[CustomerCreated]:
    return [
        CustomerCreated(
            customer_id=r["id"],
            kind=r["kind"],
            status=r["status"],
            external_ref_set=r["external_ref"] is not None,
            segment=r["segment"],
            owner=r["owner"],
            attributes=event_attributes(r["attributes"]),
            created_at=now,
            churned_at=r["churned_at"],
            churn_reason=r["churn_reason"],
            **reason_facts(r["churn_reason"]),
        )
        for r in rows
    ]


# ---- read --------------------------------------------------------------------------------------------------


async def get_customer(*, session: AsyncSession, customer_id: str, for_update: bool = False) -> Customer:
    """The customer or a 404 problem. ``for_update`` locks the row (PostgreSQL) until the transaction ends, so
    a version check and the write that follows it cannot interleave with another request's."""
    customer = await session.get(Customer, customer_id, with_for_update=for_update, populate_existing=for_update)
    if customer is None:
        raise not_found("customer", customer_id)
    return customer


async def find_by_external_ref(*, session: AsyncSession, external_ref: str) -> Customer | None:
    return (await session.execute(select(Customer).where(Customer.external_ref == external_ref))).scalar_one_or_none()


# ---- update (PATCH) ---------------------------------------------------------------------------------------------

# Fields whose values may go into events (classification); the others are personal data. Tags and the
# external reference never do: events say only whether there is an external reference now.
EVENT_FIELDS = ("kind", "segment", "owner")


def event_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes an event may carry: only those declared non-personal (CUSTOMER_ERASURE_KEEP_ATTRIBUTES).

    Kafka's log is immutable, so an attribute value in it would outlive the customer's erasure."""
    allowed = set(get_settings().erasure_keep_attributes)
    return {k: v for k, v in attributes.items() if k in allowed}


def refuse_erased(customer: Customer) -> None:
    if customer.erased_at is not None:
        raise Problem(
            409,
            "Customer erased",
            "This customer's personal data was erased; the record can no longer change.",
            code="erased",
        )


def check_version(customer: Customer, expected: frozenset[int] | None) -> None:
    """412 unless the customer's version is one of `expected` (None: any version, as If-Match: *)."""
    if expected is not None and customer.version not in expected:
        raise Problem(
            412,
            "Version mismatch",
            f"The customer is at version {customer.version}; read it again and reapply your change.",
            code="version_mismatch",
            headers={"ETag": etag(customer.version)},
            current_version=customer.version,
        )


def etag(version: int) -> str:
    return f'"{version}"'


async def update_customer(
    *, session: AsyncSession, customer_id: str, patch: CustomerUpdate, expected: frozenset[int] | None
) -> tuple[Customer, list[str]]:
    """Apply a PATCH if the version matches. Returns the customer and the names of the fields that changed.

    Emits customer.updated (names of changed fields, current classification values) when any did.
    """
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    refuse_erased(customer)
    check_version(customer, expected)

    updates: dict[str, Any] = {}
    for name, value in patch.changes().items():
        if name == "attributes":
            try:
                value = attrs.merge(customer.attributes, value)
            except attrs.InvalidAttribute as exc:
                raise Problem(
                    422,
                    "Invalid request",
                    code="validation",
                    errors=[field_error(f"attributes.{exc.key}" if exc.key else "attributes", exc.message)],
                ) from None
        elif name == "contacts":
            value = [c.model_dump(mode="json") for c in value]
        elif name == "kind":
            value = value.value
        elif isinstance(value, str) and name in ("external_ref", "segment", "owner"):
            value = value.strip() or None
        if value != getattr(customer, name):
            updates[name] = value

    if "external_ref" in updates and updates["external_ref"] is not None:
        other = await find_by_external_ref(session=session, external_ref=updates["external_ref"])
        if other is not None and other.id != customer.id:
            raise Problem(
                409,
                "External reference taken",
                f"Customer {other.id} already has this external_ref.",
                code="conflict",
                errors=[field_error("external_ref", "already used by another customer")],
            )
    if not updates:
        return customer, []

    for name, value in updates.items():
        setattr(customer, name, value)
    customer.version += 1
    customer.updated_at = utc_now()
    if "tags" in updates:
        await session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == customer.id))
        if customer.tags:
            await session.execute(insert(CustomerTag.__table__), _tag_rows(customer.id, customer.tags))  # type: ignore[attr-defined]
    if "attributes" in updates:
        await session.execute(delete(CustomerAttribute).where(col(CustomerAttribute.customer_id) == customer.id))
        if customer.attributes:
            await session.execute(
                insert(CustomerAttribute.__table__),  # type: ignore[attr-defined]
                _attribute_rows(customer.id, customer.attributes),
            )
    await session.flush()
    changed = sorted(updates)
    await enqueue(
        session,
        CustomerUpdated(
            customer_id=customer.id,
            version=customer.version,
            changed=changed,
            external_ref_set=customer.external_ref is not None,
            attributes=event_attributes(customer.attributes),
            **{name: getattr(customer, name) for name in EVENT_FIELDS},
        ),
    )
    return customer, changed
