"""Interaction domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, bindparam, exists, func, not_, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from servicekit.db import chunks, dialect_insert, on_postgres
from servicekit.events.contracts.common import InteractionType, Severity
from servicekit.events.contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated
from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.events.contracts.erp import InboundEvent
from servicekit.events.contracts.interaction import (
    ComplaintOpened,
    ComplaintOverdue,
    ComplaintUpdated,
    InteractionRecorded,
    SurveyAnswered,
    survey_dimension,
)
from servicekit.events.envelope import CloudEvent, EventData, Received
from servicekit.events.registry import REGISTRY
from servicekit.inbox import PoisonEvent
from servicekit.inbox.consumer import is_transient
from servicekit.outbox import enqueue, insert_with_events
from servicekit.pagination import MAX_PAGE
from servicekit.problems import Problem, field_error, validation_errors
from services.interaction import complaints, erp, sla
from services.interaction.directory import (
    CustomerBatchLookup,
    CustomerLookup,
    CustomerServiceUnavailable,
    CustomerSnapshot,
)
from services.interaction.models import (
    BulkReport,
    BulkRow,
    BulkRowStatus,
    ComplaintStep,
    ComplaintTransition,
    Interaction,
    InteractionCreate,
    KnownCustomer,
    ParkedEvent,
    utc_now,
)
from services.interaction.settings import DEFAULT_SLA_HOURS
from services.interaction.sla import ComplaintStatus, as_utc

log = logging.getLogger("interaction.service")

# ---- recording ----------------------------------------------------------------------------------
# One path stores interactions, whether one is posted, many are imported or an ERP event arrives:
# store_interactions. A single post is a batch of one whose outcome becomes the HTTP answer.


@dataclass(frozen=True)
class Stored:
    """What storing one row came to: `created` (interaction is the new one), `existing` (a repeat of
    interaction `id`), or `rejected` (its external_id already names interaction `id`, for another
    customer or type)."""

    status: BulkRowStatus
    id: str
    interaction: Interaction | None = None


async def record_interaction(
    *, session: AsyncSession, data: InteractionCreate, sla_hours: Mapping[str, float], lookup: CustomerLookup
) -> tuple[Interaction, bool]:
    """Store an interaction and enqueue its events; a repeated external_id returns the stored one.

    Returns the interaction and whether it was recorded now.
    """
    interaction = new_interaction(data, sla_hours)
    if await insert_with_events(session, _active_insert(session), _row(interaction), *_events(interaction)):
        # The common case, in one statement: the replica knows the customer, it is not erased, and the
        # external_id is new. Anything else wrote nothing and takes the checks below.
        return interaction, True
    stored: dict[str, tuple[str, str, str]] = {}
    if data.external_id is not None:
        # A retry is answered before the customer is checked (it may be erased or unreachable by now).
        stored = await _stored_external_ids(session, [data.external_id])
        if data.external_id in stored:
            existing = await get_interaction(session=session, interaction_id=stored[data.external_id][0])
            return _same_request(existing, data), False
    await ensure_known_customer(session=session, customer_id=data.customer_id, lookup=lookup)
    return await _store_one(session, data, sla_hours, stored)


async def _store_one(
    session: AsyncSession,
    data: InteractionCreate,
    sla_hours: Mapping[str, float],
    stored: Mapping[str, tuple[str, str, str]] | None = None,
) -> tuple[Interaction, bool]:
    """store_interactions for one interaction of a known customer: it, and whether it is new."""
    outcome = (await store_interactions(session, {0: data}, sla_hours, stored))[0]
    if outcome.interaction is not None:
        return outcome.interaction, True
    # Another request stored this external_id since the caller looked: the same interaction, or a 409.
    return _same_request(await get_interaction(session=session, interaction_id=outcome.id), data), False


async def store_interactions(
    session: AsyncSession,
    rows: Mapping[int, InteractionCreate],
    sla_hours: Mapping[str, float],
    stored: Mapping[str, tuple[str, str, str]] | None = None,
) -> dict[int, Stored]:
    """Insert interactions of known customers and enqueue their events; idempotent by external_id.

    A row whose external_id is stored already, or was carried by an earlier row, writes nothing: it
    is `existing` when it names the same customer and type, `rejected` when not. The insert skips
    external ids that a concurrent transaction stored first, and those rows are answered the same way.
    `stored`: the rows' stored external ids when the caller has just read them (saves reading again).
    """
    now = utc_now()
    if stored is None:
        stored = await _stored_external_ids(session, sorted({d.external_id for d in rows.values() if d.external_id}))
    results: dict[int, Stored] = {}
    to_insert: list[tuple[int, Interaction]] = []
    first_with: dict[str, int] = {}  # external_id -> the first row of this call that carries it
    repeats: list[tuple[int, int]] = []  # (row, the earlier row with its external_id)
    for index in sorted(rows):
        data = rows[index]
        if data.external_id is not None:
            if data.external_id in stored:
                results[index] = _matching(data, *stored[data.external_id])
                continue
            if data.external_id in first_with:
                repeats.append((index, first_with[data.external_id]))
                continue
            first_with[data.external_id] = index
        to_insert.append((index, new_interaction(data, sla_hours, now)))

    inserted = await _insert_interactions(session, [interaction for _, interaction in to_insert])
    created = [interaction for _, interaction in to_insert if interaction.id in inserted]
    # Another transaction stored these external ids between our check and our insert.
    lost_race = [i.external_id for _, i in to_insert if i.id not in inserted and i.external_id is not None]
    winners = await _stored_external_ids(session, lost_race) if lost_race else {}
    for index, interaction in to_insert:
        if interaction.id in inserted:
            results[index] = Stored(BulkRowStatus.created, interaction.id, interaction)
        else:
            assert interaction.external_id is not None  # rows without one are never skipped
            results[index] = _matching(rows[index], *winners[interaction.external_id])
    for index, earlier in repeats:
        first = results[earlier]
        # A repeat of a rejected row shares its conflict; any other repeat must match the earlier row.
        results[index] = (
            first
            if first.status == BulkRowStatus.rejected
            else _matching(rows[index], first.id, rows[earlier].customer_id, rows[earlier].type)
        )

    events = [event for interaction in created for event in _events(interaction)]
    if events:
        await enqueue(session, *events)
    return results


def _matching(data: InteractionCreate, other_id: str, customer_id: str, type_: str) -> Stored:
    """A row whose external_id already names interaction other_id: a repeat only for the same customer and type."""
    same = (customer_id, str(type_)) == (data.customer_id, data.type.value)
    return Stored(BulkRowStatus.existing if same else BulkRowStatus.rejected, other_id)


async def _stored_external_ids(session: AsyncSession, external_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """external_id -> (id, customer_id, type) of interactions already stored."""
    found: dict[str, tuple[str, str, str]] = {}
    for chunk in chunks(list(external_ids)):
        rows = await session.execute(
            select(Interaction.external_id, Interaction.id, Interaction.customer_id, Interaction.type).where(
                col(Interaction.external_id).in_(chunk)
            )
        )
        for external_id, id_, customer_id, type_ in rows:
            found[external_id] = (id_, customer_id, str(type_))
    return found


_INTERACTION_COLUMNS = [c.name for c in Interaction.__table__.columns]  # type: ignore[attr-defined]


def _row(interaction: Interaction) -> dict[str, Any]:
    """The interaction's column values, for Core INSERTs (no ORM flush)."""
    return {name: getattr(interaction, name) for name in _INTERACTION_COLUMNS}


async def _insert_interactions(session: AsyncSession, interactions: Sequence[Interaction]) -> set[str]:
    """Multi-row INSERTs that skip rows whose external_id exists; returns the ids actually inserted."""
    if not interactions:
        return set()
    table = Interaction.__table__  # type: ignore[attr-defined]
    insert = dialect_insert(session)
    inserted: set[str] = set()
    for chunk in chunks(list(interactions)):
        rows = [_row(i) for i in chunk]
        statement = insert(table).on_conflict_do_nothing(index_elements=["external_id"]).returning(table.c.id)
        result = await session.execute(statement, rows)
        inserted.update(result.scalars())
    return inserted


def new_interaction(
    data: InteractionCreate, sla_hours: Mapping[str, float], now: datetime | None = None
) -> Interaction:
    interaction = Interaction(**data.model_dump(), recorded_at=now or utc_now())
    if data.type == InteractionType.complaint:
        assert data.severity is not None  # InteractionCreate requires it
        interaction.complaint_status = ComplaintStatus.open
        interaction.complaint_updated_at = interaction.recorded_at
        # The SLA runs from when the customer complained, not from when someone typed it in.
        interaction.due_at = sla.due_at(data.occurred_at, data.severity, sla_hours)
    return interaction


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
                dimension=survey_dimension(interaction.category),
            )
        )
    return events


_ACTIVE_INSERTS: dict[bool, Any] = {}  # on PostgreSQL? -> the statement, built once (its cache key too)


def _active_insert(session: AsyncSession) -> Any:
    """INSERT .. SELECT of one interaction, bound by column name, that writes only if the replica knows its
    customer as not erased and skips a stored external_id; RETURNING the id."""
    postgres = on_postgres(session)
    statement = _ACTIVE_INSERTS.get(postgres)
    if statement is None:
        table = Interaction.__table__  # type: ignore[attr-defined]
        columns = [table.c[name] for name in _INTERACTION_COLUMNS]
        replica = KnownCustomer.__table__  # type: ignore[attr-defined]
        active = exists().where(replica.c.customer_id == bindparam("customer_id"), replica.c.erased.is_(False))
        values = core_select(*[bindparam(c.name, type_=c.type) for c in columns]).where(active)
        statement = _ACTIVE_INSERTS[postgres] = (
            dialect_insert(session)(table)
            .from_select(columns, values)
            .on_conflict_do_nothing(index_elements=["external_id"])
            .returning(table.c.id)
        )
    return statement


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
    await session.execute(
        dialect_insert(session)(KnownCustomer).values(values).on_conflict_do_nothing(index_elements=["customer_id"])
    )
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


async def apply_customer_snapshot(
    *, session: AsyncSession, snapshot: CustomerSnapshot, sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS
) -> KnownCustomer:
    row = await _replica_row(session, snapshot.customer_id)
    if snapshot.erased:
        await _erase(session, row, snapshot.updated_at or utc_now())
        return row
    if snapshot.version >= row.version:
        row.external_ref = snapshot.external_ref
        row.version = snapshot.version
    # The snapshot holds every status change up to its updated_at.
    _set_status(row, snapshot.status, snapshot.updated_at)
    row.updated_at = utc_now()
    await session.flush()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours)
    return row


async def _reference_from_master(
    session: AsyncSession, row: KnownCustomer, lookup: CustomerLookup | None, sla_hours: Mapping[str, float]
) -> KnownCustomer:
    """Read the customer's external reference from the customer service: events never carry it (it is
    personal data and Kafka's log cannot be erased), only whether there is one.

    The answer is the customer's current state, at least as new as the event; the snapshot's version
    guard keeps an older answer from overwriting a newer one.
    """
    if lookup is None:
        raise RuntimeError("an event with external_ref_set needs a customer lookup")
    try:
        snapshot = await lookup(row.customer_id)
    except CustomerServiceUnavailable as exc:
        # Transient for the consumer (ConnectionError): the event is retried, never dead-lettered.
        raise ConnectionError("customer service unavailable") from exc
    if snapshot is None:
        await session.flush()
        return row
    return await apply_customer_snapshot(session=session, snapshot=snapshot, sla_hours=sla_hours)


async def apply_customer_created(
    *,
    session: AsyncSession,
    data: CustomerCreated,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    lookup: CustomerLookup | None = None,
) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if row.version < 1:  # nothing newer known yet
        row.external_ref = data.external_ref  # None unless an event from before external_ref_set
        row.version = 1
    _set_status(row, data.status, data.created_at)
    if data.external_ref_set and not row.erased:
        return await _reference_from_master(session, row, lookup, sla_hours)
    row.updated_at = utc_now()
    await session.flush()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours)
    return row


async def apply_customer_updated(
    *,
    session: AsyncSession,
    data: CustomerUpdated,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    lookup: CustomerLookup | None = None,
) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if data.version >= row.version:
        if data.external_ref_set is None:
            # An event from before external_ref_set, carrying the value itself. `changed` says whether
            # a null external_ref means "cleared"; without it, only a value counts.
            if "external_ref" in data.changed or (not data.changed and data.external_ref is not None):
                row.external_ref = data.external_ref
        elif not data.external_ref_set:
            row.external_ref = None
        elif ("external_ref" in data.changed or not data.changed) and not row.erased:
            return await _reference_from_master(session, row, lookup, sla_hours)
        row.version = data.version
        row.updated_at = utc_now()
    await session.flush()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours)
    return row


async def apply_customer_status_changed(*, session: AsyncSession, data: CustomerStatusChanged) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if _set_status(row, data.status, data.changed_at):
        row.updated_at = utc_now()
    await session.flush()
    return row


async def apply_customer_erased(*, session: AsyncSession, data: CustomerErased) -> KnownCustomer:
    """Erase the customer's free text and, the first time, send this service's erasure receipt.

    The receipt is written in the same transaction as the erasure and only while erasure_confirmed_at
    is unset, so a redelivery (even under another event id) does not send a second one.
    """
    row = await _replica_row(session, data.customer_id)
    blanked = await _erase(session, row, data.erased_at)
    if row.erasure_confirmed_at is None:
        kept = (
            await session.execute(
                select(func.count()).select_from(Interaction).where(col(Interaction.customer_id) == row.customer_id)
            )
        ).scalar_one()
        row.erasure_confirmed_at = utc_now()
        await session.flush()
        await enqueue(
            session,
            ErasureConfirmed(
                customer_id=row.customer_id,
                service="interaction",
                erased_at=row.erasure_confirmed_at,
                summary=(
                    f"Removed free text (notes, complaint resolutions and workflow notes) from {blanked} "
                    f"interaction(s). Kept {kept} interaction(s) without personal data (type, channel, time, "
                    "amounts, severity, category) as anonymous history for scores and aggregates."
                ),
            ),
        )
    return row


async def _erase(session: AsyncSession, row: KnownCustomer, erased_at: datetime) -> int:
    """Mark the customer erased and blank the free text of its interactions (it may hold personal data).

    Returns how many interactions had free text removed now.
    """
    if not row.erased:
        row.erased = True
        row.erased_at = as_utc(erased_at)
        row.updated_at = utc_now()
    # The ERP reference names the person in the ERP: erased with the rest (an ERP event naming it
    # later is parked as for any unknown reference).
    row.external_ref = None
    # Run on every delivery (it is idempotent), so a redelivered erasure also catches late arrivals.
    has_text = or_(col(Interaction.text).is_not(None), col(Interaction.resolution).is_not(None))
    blanked = await session.execute(
        update(Interaction)
        .where(col(Interaction.customer_id) == row.customer_id, has_text)
        .values(text=None, resolution=None)
        .execution_options(synchronize_session="fetch")
    )
    complaint_ids = select(Interaction.id).where(col(Interaction.customer_id) == row.customer_id)
    await session.execute(
        update(ComplaintStep)
        .where(col(ComplaintStep.complaint_id).in_(complaint_ids), col(ComplaintStep.note).is_not(None))
        .values(note=None)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return int(getattr(blanked, "rowcount", 0) or 0)


# ---- complaints -----------------------------------------------------------------------------------


def _complaint_problem(complaint_id: str) -> Problem:
    return Problem(
        404,
        "Complaint not found",
        f"No complaint with id {complaint_id}.",
        code="not_found",
        errors=[field_error("id", "unknown complaint")],
    )


async def get_complaint(*, session: AsyncSession, complaint_id: str, for_update: bool = False) -> Interaction:
    query = select(Interaction).where(
        col(Interaction.id) == complaint_id, col(Interaction.type) == InteractionType.complaint.value
    )
    if for_update:
        # Two clerks moving the same complaint at once: the second waits, then sees the new status.
        query = query.with_for_update()
    complaint = (await session.execute(query)).scalar_one_or_none()
    if complaint is None:
        raise _complaint_problem(complaint_id)
    return complaint


async def complaint_steps(*, session: AsyncSession, complaint_id: str) -> list[ComplaintStep]:
    result = await session.execute(
        select(ComplaintStep).where(col(ComplaintStep.complaint_id) == complaint_id).order_by(col(ComplaintStep.id))
    )
    return list(result.scalars())


async def transition_complaint(
    *, session: AsyncSession, complaint_id: str, change: ComplaintTransition, now: datetime | None = None
) -> Interaction:
    """Move a complaint one step through its workflow and enqueue complaint.updated."""
    now = now or utc_now()
    complaint = await get_complaint(session=session, complaint_id=complaint_id, for_update=True)
    current = ComplaintStatus(complaint.complaint_status or ComplaintStatus.open)
    try:
        complaints.check_transition(current, change.to, change.resolution)
    except complaints.TransitionRefused as refused:
        raise Problem(
            refused.status,
            "Transition not allowed" if refused.status == 409 else "Invalid request",
            f"Cannot move complaint {complaint_id} from {current.value} to {change.to.value}: {refused.reason}.",
            code="invalid_transition" if refused.status == 409 else "validation",
            errors=[field_error(refused.field, refused.reason)],
            current_status=current.value,
            allowed=sorted(s.value for s in complaints.allowed_next(current)),
        ) from None
    complaint.complaint_status = change.to
    complaint.complaint_updated_at = now
    if change.to == ComplaintStatus.resolved:
        assert change.resolution is not None  # check_transition requires it
        complaint.resolution = change.resolution.strip()
    session.add(
        ComplaintStep(complaint_id=complaint.id, previous_status=current, status=change.to, note=change.note, at=now)
    )
    await session.flush()
    assert complaint.severity is not None
    await enqueue(
        session,
        ComplaintUpdated(
            customer_id=complaint.customer_id,
            complaint_id=complaint.id,
            previous_status=current.value,
            status=change.to.value,
            severity=complaint.severity,
            changed_at=now,
            category=complaint.category,
            due_at=complaint.due_at,
        ),
    )
    return complaint


async def list_complaints(
    *,
    session: AsyncSession,
    statuses: Sequence[ComplaintStatus] = (),
    severities: Sequence[Severity] = (),
    categories: Sequence[str] = (),
    customer_id: str | None = None,
    overdue: bool | None = None,
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Interaction], int]:
    """Complaints matching every filter, the most urgent (earliest due) first; a page and the total."""
    now = now or utc_now()
    conditions: list[ColumnElement[bool]] = [col(Interaction.type) == InteractionType.complaint.value]
    if statuses:
        conditions.append(col(Interaction.complaint_status).in_([s.value for s in statuses]))
    if severities:
        conditions.append(col(Interaction.severity).in_([s.value for s in severities]))
    if categories:
        conditions.append(col(Interaction.category).in_(list(categories)))
    if customer_id is not None:
        conditions.append(col(Interaction.customer_id) == customer_id)
    if overdue is not None:
        # The same rule as sla.is_overdue: past due while the SLA still runs (flagged or not yet).
        late = and_(
            col(Interaction.complaint_status).in_([s.value for s in sla.SLA_RUNNING]),
            col(Interaction.due_at) < now,
        )
        conditions.append(late if overdue else not_(late))
    total = (await session.execute(select(func.count()).select_from(Interaction).where(*conditions))).scalar_one()
    page = await session.execute(
        select(Interaction)
        .where(*conditions)
        .order_by(col(Interaction.due_at).asc(), col(Interaction.id).asc())
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return list(page.scalars()), total


async def flag_overdue_complaints(*, session: AsyncSession, now: datetime, limit: int = 500) -> list[str]:
    """Flag complaints that just went past their SLA and enqueue complaint.overdue once for each.

    The flag and the event commit together with the caller's transaction. The conditional UPDATE
    (overdue_at IS NULL) makes a second watcher, in this process or another, find the row already
    flagged and emit nothing. Returns the ids flagged now.
    """
    candidates = await session.execute(
        select(Interaction.id)
        .where(
            col(Interaction.complaint_status).in_([s.value for s in sla.SLA_RUNNING]),
            col(Interaction.due_at) < now,
            col(Interaction.overdue_at).is_(None),
        )
        .order_by(col(Interaction.due_at))
        .limit(limit)
    )
    flagged: list[str] = []
    for complaint_id in candidates.scalars():
        claimed = await session.execute(
            update(Interaction)
            .where(
                col(Interaction.id) == complaint_id,
                col(Interaction.overdue_at).is_(None),
                col(Interaction.complaint_status).in_([s.value for s in sla.SLA_RUNNING]),
            )
            .values(overdue_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue  # another watcher flagged it, or it was resolved meanwhile
        complaint = (await session.execute(select(Interaction).where(col(Interaction.id) == complaint_id))).scalar_one()
        await session.refresh(complaint)
        assert complaint.severity is not None and complaint.due_at is not None
        await enqueue(
            session,
            ComplaintOverdue(
                customer_id=complaint.customer_id,
                complaint_id=complaint.id,
                severity=complaint.severity,
                status=str(complaint.complaint_status),
                due_at=complaint.due_at,
                category=complaint.category,
                detected_at=now,
            ),
        )
        flagged.append(complaint_id)
    if flagged:
        log.info("complaints overdue", extra={"count": len(flagged)})
    return flagged


# ---- bulk import ----------------------------------------------------------------------------------


def validate_rows(items: Sequence[Any]) -> tuple[dict[int, InteractionCreate], dict[int, list[dict[str, str]]]]:
    """Validate each row on its own: the valid ones by index, and the errors of the others by index."""
    valid: dict[int, InteractionCreate] = {}
    errors: dict[int, list[dict[str, str]]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[index] = [field_error("body", "must be an object")]
            continue
        try:
            valid[index] = InteractionCreate.model_validate(item)
        except ValidationError as exc:
            errors[index] = validation_errors(list(exc.errors()))
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
    valid, errors = validate_rows(items)
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


# ---- ERP/SCM inbound ------------------------------------------------------------------------------


async def customer_by_ref(*, session: AsyncSession, customer_ref: str) -> KnownCustomer | None:
    """The replica's customer with this ERP reference (a live one before an erased one)."""
    result = await session.execute(
        select(KnownCustomer)
        .where(col(KnownCustomer.external_ref) == customer_ref)
        .order_by(col(KnownCustomer.erased).asc(), col(KnownCustomer.version).desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def record_inbound(
    *, session: AsyncSession, event: Received[InboundEvent], sla_hours: Mapping[str, float]
) -> Interaction | None:
    """Turn an ERP/SCM event into an interaction, or park it if its customer is not known yet.

    Returns the interaction (new or the one recorded before), or None when parked. Raises
    PoisonEvent for an event that can never become an interaction (it goes to the dead-letter topic).
    """
    data = event.data
    try:
        erp.to_interaction(data, erp.PENDING_CUSTOMER)  # checked now, so that nothing invalid gets parked
    except ValidationError as exc:
        raise PoisonEvent(f"{event.envelope.type} cannot become an interaction: {_brief(exc)}") from exc
    customer = await customer_by_ref(session=session, customer_ref=data.customer_ref)
    if customer is None:
        await park(session=session, event=event, reason=f"no customer with external_ref {data.customer_ref!r} yet")
        return None
    if customer.erased:
        raise PoisonEvent(f"customer {customer.customer_id} was erased")
    return await _record_for(session, data, customer.customer_id, sla_hours)


async def _record_for(
    session: AsyncSession, data: InboundEvent, customer_id: str, sla_hours: Mapping[str, float]
) -> Interaction:
    interaction_data = erp.to_interaction(data, customer_id)
    assert interaction_data.external_id is not None
    stored = await _stored_external_ids(session, [interaction_data.external_id])
    if interaction_data.external_id in stored:  # a repeat of an event already applied
        return await get_interaction(session=session, interaction_id=stored[interaction_data.external_id][0])
    interaction, _ = await _store_one(session, interaction_data, sla_hours, stored)
    return interaction


async def park(*, session: AsyncSession, event: Received[InboundEvent], reason: str) -> None:
    values = {
        "event_id": event.envelope.id,
        "event_type": event.envelope.type,
        "topic": event.data.topic,
        "customer_ref": event.data.customer_ref,
        "envelope": event.envelope.model_dump(mode="json", exclude_none=True),
        "reason": reason,
        "parked_at": utc_now(),
        "attempts": 0,
    }
    await session.execute(
        dialect_insert(session)(ParkedEvent).values(values).on_conflict_do_nothing(index_elements=["event_id"])
    )
    # Not the customer_ref: it names the person in the ERP, and logs are not erased.
    log.info("inbound event parked", extra={"event_type": event.envelope.type, "event_id": event.envelope.id})


async def apply_parked_for(
    *, session: AsyncSession, customer: KnownCustomer, sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS
) -> int:
    """Apply and delete the parked events naming this customer's reference; returns how many were applied.

    Each runs in a savepoint: one that fails stays parked (attempts + 1, last_error) without undoing
    the others or the caller's change.
    """
    if customer.external_ref is None or customer.erased:
        return 0
    query = (
        select(ParkedEvent).where(col(ParkedEvent.customer_ref) == customer.external_ref).order_by(col(ParkedEvent.id))
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # another instance is applying those
    parked = list((await session.execute(query)).scalars())
    applied = 0
    for row in parked:
        try:
            async with session.begin_nested():
                received = REGISTRY.parse(CloudEvent.model_validate(row.envelope))
                assert isinstance(received.data, InboundEvent)
                await _record_for(session, received.data, customer.customer_id, sla_hours)
                await session.delete(row)
                await session.flush()
            applied += 1
        except Exception as exc:  # kept parked with the reason, for ops to see
            if is_transient(exc):
                raise
            await session.execute(
                update(ParkedEvent)
                .where(col(ParkedEvent.id) == row.id)
                .values(attempts=ParkedEvent.attempts + 1, last_attempt_at=utc_now(), last_error=_brief(exc))
                .execution_options(synchronize_session=False)
            )
            log.warning("parked event could not be applied", extra={"event_id": row.event_id, "error": repr(exc)})
    if applied:
        log.info("parked events applied", extra={"customer_id": customer.customer_id, "count": applied})
    return applied


async def sweep_parked(*, session: AsyncSession, sla_hours: Mapping[str, float], limit: int = 100) -> int:
    """Apply parked events whose customer is known by now.

    The replica handlers apply them as the customer arrives; this sweep catches the one race they
    cannot see (an event parked in a transaction that committed just after the customer's).
    """
    refs = await session.execute(
        select(ParkedEvent.customer_ref)
        .join(KnownCustomer, col(KnownCustomer.external_ref) == col(ParkedEvent.customer_ref))
        .where(col(KnownCustomer.erased).is_(False))
        .distinct()
        .limit(limit)
    )
    applied = 0
    for ref in list(refs.scalars()):
        customer = await customer_by_ref(session=session, customer_ref=ref)
        if customer is not None:
            applied += await apply_parked_for(session=session, customer=customer, sla_hours=sla_hours)
    return applied


async def list_parked(
    *,
    session: AsyncSession,
    customer_ref: str | None = None,
    event_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ParkedEvent], int]:
    conditions: list[ColumnElement[bool]] = []
    if customer_ref is not None:
        conditions.append(col(ParkedEvent.customer_ref) == customer_ref)
    if event_type is not None:
        conditions.append(col(ParkedEvent.event_type) == event_type)
    total = (await session.execute(select(func.count()).select_from(ParkedEvent).where(*conditions))).scalar_one()
    page = await session.execute(
        select(ParkedEvent).where(*conditions).order_by(col(ParkedEvent.id)).limit(min(limit, MAX_PAGE)).offset(offset)
    )
    return list(page.scalars()), total


def _brief(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:1000]
