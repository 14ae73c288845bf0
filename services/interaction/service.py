"""Interaction domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from servicekit.events.contracts.common import InteractionType
from servicekit.events.contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated
from servicekit.events.contracts.interaction import ComplaintOpened, InteractionRecorded, SurveyAnswered
from servicekit.events.envelope import EventData
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from services.interaction import sla
from services.interaction.directory import CustomerLookup, CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.models import Interaction, InteractionCreate, KnownCustomer, utc_now
from services.interaction.sla import ComplaintStatus, as_utc

MAX_PAGE = 200
log = logging.getLogger("interaction.service")

# ---- recording ----------------------------------------------------------------------------------


async def record_interaction(
    *, session: AsyncSession, data: InteractionCreate, sla_hours: Mapping[str, float], lookup: CustomerLookup
) -> tuple[Interaction, bool]:
    """Store an interaction and enqueue its events; a repeated external_id returns the stored one.

    Returns the interaction and whether it was recorded now.
    """
    if data.external_id is not None:
        existing = await find_by_external_id(session=session, external_id=data.external_id)
        if existing is not None:
            return _same_request(existing, data), False
    await ensure_known_customer(session=session, customer_id=data.customer_id, lookup=lookup)

    interaction = Interaction(**data.model_dump())
    if data.type == InteractionType.complaint:
        assert data.severity is not None  # InteractionCreate requires it
        interaction.complaint_status = ComplaintStatus.open
        # The SLA runs from when the customer complained, not from when someone typed it in.
        interaction.due_at = sla.due_at(data.occurred_at, data.severity, sla_hours)

    if data.external_id is None:
        session.add(interaction)
        await session.flush()
    else:
        try:
            # A savepoint, so that losing a race on external_id leaves the transaction usable.
            async with session.begin_nested():
                session.add(interaction)
                await session.flush()
        except IntegrityError:
            existing = await find_by_external_id(session=session, external_id=data.external_id)
            if existing is None:
                raise
            return _same_request(existing, data), False

    await enqueue(session, *_events(interaction))
    return interaction, True


def _same_request(existing: Interaction, data: InteractionCreate) -> Interaction:
    # A retry must describe the same interaction; an id reused for something else is a client bug.
    if existing.customer_id != data.customer_id or existing.type != data.type:
        raise Problem(
            409,
            "External id already used",
            f"external_id {data.external_id!r} already identifies another interaction ({existing.id}).",
            code="conflict",
            errors=[field_error("external_id", "already used for a different customer or type")],
            interaction_id=existing.id,
        )
    return existing


def _events(interaction: Interaction) -> list[EventData]:
    events: list[EventData] = [
        InteractionRecorded(
            customer_id=interaction.customer_id,
            interaction_id=interaction.id,
            type=interaction.type,
            channel=interaction.channel,
            initiated_by=interaction.initiated_by,
            occurred_at=interaction.occurred_at,
            amount=interaction.amount,
            currency=interaction.currency,
            quantity=interaction.quantity,
            order_id=interaction.order_id,
            severity=interaction.severity,
            category=interaction.category,
            rating=interaction.rating,
            sentiment=interaction.sentiment,
        )
    ]
    if interaction.type == InteractionType.complaint:
        assert interaction.severity is not None and interaction.due_at is not None
        events.append(
            ComplaintOpened(
                customer_id=interaction.customer_id,
                complaint_id=interaction.id,
                category=interaction.category,
                severity=interaction.severity,
                opened_at=interaction.occurred_at,
                due_at=interaction.due_at,
            )
        )
    elif interaction.type == InteractionType.survey:
        assert interaction.survey is not None and interaction.score is not None
        events.append(
            SurveyAnswered(
                customer_id=interaction.customer_id,
                interaction_id=interaction.id,
                survey=interaction.survey,
                score=interaction.score,
                answered_at=interaction.occurred_at,
            )
        )
    return events


async def ensure_known_customer(*, session: AsyncSession, customer_id: str, lookup: CustomerLookup) -> KnownCustomer:
    """The customer from the replica, or from the customer service if the replica has not caught up."""
    known = await session.get(KnownCustomer, customer_id)
    if known is None:
        try:
            snapshot = await lookup(customer_id)
        except CustomerServiceUnavailable:
            raise Problem(
                503,
                "Customer service unavailable",
                "The customer is not known here yet and the customer service could not be asked; retry shortly.",
                code="dependency_unavailable",
                headers={"Retry-After": "2"},
            ) from None
        if snapshot is None:
            raise Problem(
                404,
                "Customer not found",
                f"No customer with id {customer_id}.",
                code="unknown_customer",
                errors=[field_error("customer_id", "unknown customer")],
            )
        known = await apply_customer_snapshot(session=session, snapshot=snapshot)
        log.info("customer taken from the customer service ahead of its events", extra={"customer_id": customer_id})
    if known.erased:
        raise Problem(
            410,
            "Customer erased",
            f"The data of customer {customer_id} was erased; no interactions can be recorded for it.",
            code="customer_erased",
            errors=[field_error("customer_id", "erased customer")],
        )
    return known


# ---- reading ------------------------------------------------------------------------------------


async def find_by_external_id(*, session: AsyncSession, external_id: str) -> Interaction | None:
    result = await session.execute(select(Interaction).where(Interaction.external_id == external_id))
    return result.scalar_one_or_none()


async def get_interaction(*, session: AsyncSession, interaction_id: str) -> Interaction:
    interaction = await session.get(Interaction, interaction_id)
    if interaction is None:
        raise Problem(
            404,
            "Interaction not found",
            f"No interaction with id {interaction_id}.",
            code="not_found",
            errors=[field_error("id", "unknown interaction")],
        )
    return interaction


async def list_customer_interactions(
    *,
    session: AsyncSession,
    customer_id: str,
    types: Sequence[InteractionType] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Interaction], int]:
    """A customer's timeline, newest first, occurred_at in [since, until); returns a page and the total."""
    conditions = [col(Interaction.customer_id) == customer_id]
    if types:
        conditions.append(col(Interaction.type).in_([t.value for t in types]))
    # Stored in UTC (SQLite compares the text), so bounds are converted to UTC too.
    if since is not None:
        conditions.append(col(Interaction.occurred_at) >= as_utc(since))
    if until is not None:
        conditions.append(col(Interaction.occurred_at) < as_utc(until))
    total = (await session.execute(select(func.count()).select_from(Interaction).where(*conditions))).scalar_one()
    page = await session.execute(
        select(Interaction)
        .where(*conditions)
        .order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return list(page.scalars()), total


# ---- the customer replica -----------------------------------------------------------------------
# Events of one customer arrive in order on one partition, but the replica is also written from the
# customer service's HTTP answers, and a replay may bring old events: every change is guarded by the
# customer version (references) or the time of the status, and erasure is final.


async def _replica_row(session: AsyncSession, customer_id: str) -> KnownCustomer:
    """The replica row of a customer, created empty if missing (safe against a concurrent insert)."""
    row = await session.get(KnownCustomer, customer_id)
    if row is not None:
        return row
    values = {"customer_id": customer_id, "version": 0, "erased": False, "updated_at": utc_now()}
    dialect = session.bind.dialect.name if session.bind is not None else ""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(insert(KnownCustomer).values(values).on_conflict_do_nothing(index_elements=["customer_id"]))
    row = await session.get(KnownCustomer, customer_id)
    assert row is not None
    return row


def _set_status(row: KnownCustomer, status: str | None, at: datetime | None) -> bool:
    if status is None:
        return False
    if row.status_at is not None and at is not None and as_utc(at) < as_utc(row.status_at):
        return False  # an older status than the one held
    row.status = status
    row.status_at = as_utc(at) if at is not None else row.status_at
    return True


async def apply_customer_snapshot(*, session: AsyncSession, snapshot: CustomerSnapshot) -> KnownCustomer:
    row = await _replica_row(session, snapshot.customer_id)
    if snapshot.erased:
        return await _erase(session, row, snapshot.updated_at or utc_now())
    if snapshot.version >= row.version:
        row.external_ref = snapshot.external_ref
        row.version = snapshot.version
    # The snapshot holds every status change up to its updated_at.
    _set_status(row, snapshot.status, snapshot.updated_at)
    row.updated_at = utc_now()
    await session.flush()
    return row


async def apply_customer_created(*, session: AsyncSession, data: CustomerCreated) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if row.version < 1:  # nothing newer known yet
        row.external_ref = data.external_ref
        row.version = 1
    _set_status(row, data.status, data.created_at)
    row.updated_at = utc_now()
    await session.flush()
    return row


async def apply_customer_updated(*, session: AsyncSession, data: CustomerUpdated) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if data.version >= row.version:
        # `changed` says whether a null external_ref means "cleared"; without it, only a value counts.
        if "external_ref" in data.changed or (not data.changed and data.external_ref is not None):
            row.external_ref = data.external_ref
        row.version = data.version
        row.updated_at = utc_now()
    await session.flush()
    return row


async def apply_customer_status_changed(*, session: AsyncSession, data: CustomerStatusChanged) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if _set_status(row, data.status, data.changed_at):
        row.updated_at = utc_now()
    await session.flush()
    return row


async def apply_customer_erased(*, session: AsyncSession, data: CustomerErased) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    return await _erase(session, row, data.erased_at)


async def _erase(session: AsyncSession, row: KnownCustomer, erased_at: datetime) -> KnownCustomer:
    """Mark the customer erased and blank the free text of its interactions (it may hold personal data)."""
    if not row.erased:
        row.erased = True
        row.erased_at = as_utc(erased_at)
        row.updated_at = utc_now()
    # Run on every delivery (it is idempotent), so a redelivered erasure also catches late arrivals.
    await session.execute(
        update(Interaction)
        .where(col(Interaction.customer_id) == row.customer_id, col(Interaction.text).is_not(None))
        .values(text=None)
        .execution_options(synchronize_session="fetch")
    )
    await session.flush()
    return row
