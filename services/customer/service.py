"""Customer domain functions: they change state and enqueue events, and never commit.

Events carry ids, codes and classification only; names, e-mail addresses, phone numbers, contacts and
notes stay here (see servicekit.events.contracts.customer).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.db import chunks
from servicekit.events.contracts.common import CustomerStatus
from servicekit.events.contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated
from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error, validation_errors
from servicekit.types import as_utc
from services.customer import attributes as attrs
from services.customer import lifecycle
from services.customer.models import (
    ERASED_NAME,
    BulkReply,
    BulkReport,
    BulkRowResult,
    Consent,
    ConsentChange,
    ContactProfile,
    Customer,
    CustomerAttribute,
    CustomerCreate,
    CustomerTag,
    CustomerUpdate,
    ErasureReceipt,
    ErasureReceiptPublic,
    ErasureRequest,
    ErasureStatus,
    IdempotencyKey,
    PointsAccount,
    PointsEntry,
    StatusChange,
    StatusChangeRequest,
    utc_now,
)
from services.customer.settings import get_settings

SORTS = ("created_at", "-created_at", "name", "-name")
# Below every database's limit on bound parameters per statement.
SELF = "customer"
ERASURE_SUMMARY = (
    "name, e-mail, phone, contacts, tags, external reference, status notes, personal attributes, consent "
    "records, contact preferences, the consent history and the loyalty points ledger removed; "
    "kind, segment, owner, status and churn details kept"
)


# ---- create ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    customer: Customer
    status_code: int  # 201 created now; a replayed key answers the status code it was first answered with
    replayed: bool = False


def request_hash(data: CustomerCreate) -> str:
    """Hash of the request's meaning (not its bytes), so key order or whitespace do not matter."""
    return hashlib.sha256(orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def scoped_key(idempotency_key: str, caller: str) -> str:
    """The stored form of a caller's Idempotency-Key: keys are per caller, so another caller sending the
    same key (keys are often guessable) neither replays nor blocks this one's request."""
    if not caller:
        return idempotency_key  # no gateway in front (tests, local debugging): one caller
    return "c1:" + hashlib.sha256(f"{caller}\n{idempotency_key}".encode()).hexdigest()


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
    [values] = await _insert_new(session, [data])
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


async def _insert_new(session: AsyncSession, items: Sequence[CustomerCreate]) -> list[dict[str, Any]]:
    """Insert validated customers with their index rows, history and customer.created events in a few
    multi-row statements. Returns the inserted rows' values."""
    now = utc_now()
    rows = [_row_values(data, now) for data in items]
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
    await enqueue(
        session,
        *(
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
                **_reason_facts(r["churn_reason"]),
            )
            for r in rows
        ),
    )
    return rows


# ---- read --------------------------------------------------------------------------------------------------


def not_found(customer_id: str) -> Problem:
    return Problem(
        404,
        "Customer not found",
        f"No customer with id {customer_id}",
        code="not_found",
        errors=[field_error("id", "unknown customer")],
    )


async def get_customer(*, session: AsyncSession, customer_id: str, for_update: bool = False) -> Customer:
    """The customer or a 404 problem. ``for_update`` locks the row (PostgreSQL) until the transaction ends, so
    a version check and the write that follows it cannot interleave with another request's."""
    customer = await session.get(Customer, customer_id, with_for_update=for_update, populate_existing=for_update)
    if customer is None:
        raise not_found(customer_id)
    return customer


async def find_by_external_ref(*, session: AsyncSession, external_ref: str) -> Customer | None:
    return (await session.execute(select(Customer).where(Customer.external_ref == external_ref))).scalar_one_or_none()


# ---- list --------------------------------------------------------------------------------------------------


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


# ---- update (PATCH) ---------------------------------------------------------------------------------------------

# Fields whose values may go into events (classification); the others are personal data. Tags and the
# external reference never do: events say only whether there is an external reference now.
EVENT_FIELDS = ("kind", "segment", "owner")


def event_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes an event may carry: only those declared non-personal (CUSTOMER_ERASURE_KEEP_ATTRIBUTES).

    Kafka's log is immutable, so an attribute value in it would outlive the customer's erasure."""
    allowed = set(get_settings().erasure_keep_attributes)
    return {k: v for k, v in attributes.items() if k in allowed}


def _refuse_erased(customer: Customer) -> None:
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
    _refuse_erased(customer)
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


# ---- status -------------------------------------------------------------------------------------------------------


async def change_status(
    *, session: AsyncSession, customer_id: str, request: StatusChangeRequest, expected: frozenset[int] | None = None
) -> Customer:
    """Move the customer along its lifecycle; 409 with the reason when the move is not allowed."""
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    _refuse_erased(customer)
    check_version(customer, expected)
    current = CustomerStatus(customer.status)
    try:
        lifecycle.check_transition(current, request.status)
    except lifecycle.InvalidTransition as exc:
        raise Problem(
            409,
            "Invalid status transition",
            str(exc),
            code="invalid_transition",
            status_from=current.value,
            status_to=request.status.value,
            allowed=sorted(s.value for s in lifecycle.allowed_targets(current)),
        ) from None
    problems = lifecycle.check_details(
        request.status, reason=request.reason, churned_at=request.churned_at, today=utc_now().date()
    )
    if problems:
        raise Problem(
            422,
            "Invalid request",
            "; ".join(f"{p.field}: {p.message}" for p in problems),
            code="validation",
            errors=[field_error(p.field, p.message) for p in problems],
        )

    now = utc_now()
    customer.status = request.status
    customer.status_changed_at = now
    if request.status == CustomerStatus.churned:
        customer.churned_at = request.churned_at
        customer.churn_reason = request.reason
    customer.version += 1
    customer.updated_at = now
    session.add(
        StatusChange(
            customer_id=customer.id,
            previous_status=current,
            status=request.status,
            reason=request.reason,
            churned_at=request.churned_at,
            note=request.note,
            version=customer.version,
            changed_at=now,
        )
    )
    await session.flush()
    await enqueue(
        session,
        CustomerStatusChanged(
            customer_id=customer.id,
            previous_status=current,
            status=request.status,
            reason=request.reason.value if request.reason else None,
            **_reason_facts(request.reason),
            churned_at=request.churned_at,
            changed_at=now,
            version=customer.version,
        ),
    )
    return customer


def _reason_facts(reason: lifecycle.ChurnReason | str | None) -> dict[str, Any]:
    """The side and voluntariness a churn event carries next to its reason code (additive fields)."""
    facts = lifecycle.facts_of(reason)
    return {"side": facts.side.value, "voluntary": facts.voluntary} if facts else {}


async def status_history(
    *, session: AsyncSession, customer_id: str, limit: int, offset: int
) -> tuple[list[StatusChange], int]:
    await get_customer(session=session, customer_id=customer_id)
    where = col(StatusChange.customer_id) == customer_id
    total = (await session.execute(select(func.count()).select_from(StatusChange).where(where))).scalar_one()
    query = select(StatusChange).where(where).order_by(col(StatusChange.id).desc()).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars()), total


# ---- bulk import ----------------------------------------------------------------------------------------------------


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
    for index, row in enumerate(rows):
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
                inserted = await _insert_new(session, [data for _, data in pending])
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


# ---- erasure ---------------------------------------------------------------------------------------------------------


async def erase_customer(
    *, session: AsyncSession, customer_id: str, keep_attributes: Iterable[str] = ()
) -> tuple[ErasureRequest, bool]:
    """Remove the customer's personal data, keep the anonymous classification, record this service's
    receipt and emit customer.erased (other services erase their copies) and erasure.confirmed.

    Returns the erasure request and whether it was made now (a repeated DELETE changes nothing).
    """
    customer = await get_customer(session=session, customer_id=customer_id, for_update=True)
    request = await session.get(ErasureRequest, customer_id)
    if request is not None and customer.erased_at is not None:
        return request, False

    now = utc_now()
    keep = set(keep_attributes)
    customer.name = ERASED_NAME
    customer.email = None
    customer.phone = None
    customer.contacts = []
    customer.external_ref = None  # links the record to the person in the ERP
    customer.tags = []
    customer.attributes = {k: v for k, v in customer.attributes.items() if k in keep}
    customer.erased_at = now
    customer.version += 1
    customer.updated_at = now
    await session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == customer_id))
    await session.execute(
        delete(CustomerAttribute).where(
            col(CustomerAttribute.customer_id) == customer_id, col(CustomerAttribute.key).not_in(keep)
        )
    )
    await session.execute(update(StatusChange).where(col(StatusChange.customer_id) == customer_id).values(note=None))
    # The stored request hash was computed over the personal data.
    await session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.customer_id) == customer_id))
    # Consent: the per-channel records, the contact profile (time zone) and the consent audit trail.
    for model in (Consent, ConsentChange, ContactProfile):
        await session.execute(delete(model).where(col(model.customer_id) == customer_id))  # type: ignore[attr-defined]
    # Loyalty points: the ledger and the account (balance, tier); the ERP keeps its own documents.
    for ledger in (PointsEntry, PointsAccount):
        await session.execute(delete(ledger).where(col(ledger.customer_id) == customer_id))  # type: ignore[attr-defined]
    if request is None:
        request = ErasureRequest(customer_id=customer_id, requested_at=now)
        session.add(request)
    await session.flush()
    await record_receipt(
        session=session, customer_id=customer_id, service=SELF, confirmed_at=now, summary=ERASURE_SUMMARY
    )
    await enqueue(
        session,
        CustomerErased(customer_id=customer_id, erased_at=now),
        ErasureConfirmed(customer_id=customer_id, service=SELF, erased_at=now, summary=ERASURE_SUMMARY),
    )
    return request, True


async def record_receipt(
    *,
    session: AsyncSession,
    customer_id: str,
    service: str,
    confirmed_at: datetime,
    summary: str = "",
    event_id: str | None = None,
) -> ErasureReceipt | None:
    """Record one service's erasure confirmation; None if the customer is unknown here.

    Idempotent: a repeated confirmation (same or new event id) keeps the earliest confirmation time.
    """
    if await session.get(Customer, customer_id) is None:
        return None
    confirmed_at = as_utc(confirmed_at)
    receipt = await session.get(ErasureReceipt, (customer_id, service))
    if receipt is None:
        receipt = ErasureReceipt(
            customer_id=customer_id, service=service, confirmed_at=confirmed_at, summary=summary, event_id=event_id
        )
        session.add(receipt)
    elif confirmed_at < receipt.confirmed_at:
        receipt.confirmed_at = confirmed_at
        receipt.summary = summary or receipt.summary
        receipt.event_id = event_id
    await session.flush()
    return receipt


async def erasure_status(*, session: AsyncSession, customer_id: str, expected_services: Sequence[str]) -> ErasureStatus:
    await get_customer(session=session, customer_id=customer_id)
    request = await session.get(ErasureRequest, customer_id)
    if request is None:
        raise Problem(
            404,
            "No erasure requested",
            f"No erasure was requested for customer {customer_id}.",
            code="not_found",
        )
    query = select(ErasureReceipt).where(col(ErasureReceipt.customer_id) == customer_id)
    receipts = {r.service: r for r in (await session.execute(query)).scalars()}
    services: dict[str, datetime | None] = {
        name: receipts[name].confirmed_at if name in receipts else None for name in expected_services
    }
    # A service outside the expected list that confirmed anyway is shown too.
    services.update({name: r.confirmed_at for name, r in receipts.items() if name not in services})
    return ErasureStatus(
        customer_id=customer_id,
        requested_at=request.requested_at,
        services=services,
        complete=all(name in receipts for name in expected_services),
        receipts=[
            ErasureReceiptPublic(service=r.service, confirmed_at=r.confirmed_at, summary=r.summary)
            for r in sorted(receipts.values(), key=lambda r: r.confirmed_at)
        ],
    )
