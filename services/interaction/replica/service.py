"""The local customer replica.

Events of one customer arrive in order on one partition, but the replica is also written from the
customer service's HTTP answers, and a replay may bring old events: every change is guarded by the
customer version (references) or the time of the status, and erasure is final. Never commits.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import bindparam, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from contracts.customer import (
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
    team_attribute,
    tier_attribute,
)
from contracts.erasure import ErasureConfirmed
from contracts.scoring import ScoreUpdated
from servicekit.clock import utc_now
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from servicekit.sql import KEYS, chunks, dialect_insert
from servicekit.types import as_utc
from services.interaction.complaints.models import ComplaintStep
from services.interaction.inbound.service import ParkedRefs, apply_parked_for, preload_parked
from services.interaction.interactions.models import Interaction
from services.interaction.replica.directory import (
    CustomerLookup,
    CustomerServiceUnavailable,
    CustomerSnapshot,
)
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import DEFAULT_SLA_HOURS

log = logging.getLogger("interaction.service")


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


async def preload_replica_rows(
    *,
    session: AsyncSession,
    customer_ids: Collection[str],
    refs: Collection[str] = (),
    parked: ParkedRefs | None = None,
) -> dict[str, KnownCustomer]:
    """A consumer batch's replica rows in the session (created empty where missing) in a few statements,
    and which references have parked events (inbound.service.preload_parked): each event's handler then
    finds its row without a query, and asks for parked events only where there are some. The caller keeps
    the rows it returns for the transaction: the session's identity map holds them only weakly."""
    ids = sorted(customer_ids)
    found: dict[str, KnownCustomer] = {}
    for chunk in chunks(ids):
        found.update((r.customer_id, r) for r in (await session.execute(_ROWS, {KEYS: list(chunk)})).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        now = utc_now()
        # The new rows come back from the insert itself (one round trip, not an insert and a read); only
        # those another transaction inserted meanwhile (skipped by ON CONFLICT) are read after it.
        insert = (
            dialect_insert(session)(KnownCustomer)
            .on_conflict_do_nothing(index_elements=["customer_id"])
            .returning(KnownCustomer)
        )
        for chunk in chunks(missing):
            rows = [{"customer_id": i, "version": 0, "erased": False, "updated_at": now} for i in chunk]
            found.update((r.customer_id, r) for r in (await session.scalars(insert, rows)))
            if raced := [i for i in chunk if i not in found]:
                found.update((r.customer_id, r) for r in (await session.execute(_ROWS, {KEYS: raced})).scalars())
    if parked is not None:  # None: events that release no parked ones (score.updated)
        known_refs = {r.external_ref for r in found.values() if r.external_ref}
        await preload_parked(session=session, refs=set(refs) | known_refs, parked=parked)
    return found


_ROWS = select(KnownCustomer).where(col(KnownCustomer.customer_id).in_(bindparam(KEYS, expanding=True)))


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


def _take_profile(row: KnownCustomer, data: CustomerCreated | CustomerUpdated) -> None:
    """Segment, team and account-managed tier from a customer event the version guard let through.

    Events since external_ref_set carry the customer's current segment and (non-personal) attributes
    whatever changed; an older update names what it changed, or without that only carries values."""
    if row.erased:
        return
    if isinstance(data, CustomerCreated) or data.external_ref_set is not None:
        taken = {"segment", "attributes"}
    else:
        taken = set(data.changed) or {n for n, v in (("segment", data.segment), ("attributes", data.attributes)) if v}
    if "segment" in taken:
        row.segment = data.segment
    if "attributes" in taken:
        row.team, row.managed_tier = team_attribute(data.attributes), tier_attribute(data.attributes)
    if taken == {"segment", "attributes"}:  # the whole profile, as the backfill would read it
        row.profile_known = True


async def apply_score(*, session: AsyncSession, data: ScoreUpdated) -> KnownCustomer:
    """Keep the customer's scored value tier from score.updated; an older score than the one held, or
    an erased customer, changes nothing (a redelivery re-applies the same values)."""
    row = await _replica_row(session, data.customer_id)
    at = as_utc(data.computed_at)
    if row.erased or (row.scored_tier_at is not None and at < as_utc(row.scored_tier_at)):
        return row
    row.scored_tier, row.scored_tier_at = data.current.value_tier, at
    return row


async def apply_customer_snapshot(
    *,
    session: AsyncSession,
    snapshot: CustomerSnapshot,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    parked: ParkedRefs | None = None,
) -> KnownCustomer:
    row = await _replica_row(session, snapshot.customer_id)
    if snapshot.erased:
        await _erase(session, row, snapshot.updated_at or utc_now())
        return row
    if snapshot.version >= row.version:
        row.external_ref = snapshot.external_ref
        row.owner, row.owner_known = snapshot.owner, True
        row.version = snapshot.version
    # The snapshot holds every status change up to its updated_at.
    _set_status(row, snapshot.status, snapshot.updated_at)
    row.updated_at = utc_now()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours, parked=parked)  # the row goes at commit
    return row


async def _reference_from_master(
    session: AsyncSession,
    row: KnownCustomer,
    lookup: CustomerLookup | None,
    sla_hours: Mapping[str, float],
    parked: ParkedRefs | None,
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
    return await apply_customer_snapshot(session=session, snapshot=snapshot, sla_hours=sla_hours, parked=parked)


async def apply_customer_created(
    *,
    session: AsyncSession,
    data: CustomerCreated,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    lookup: CustomerLookup | None = None,
    parked: ParkedRefs | None = None,
) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if row.version < 1:  # nothing newer known yet
        row.external_ref = data.external_ref  # None unless an event from before external_ref_set
        if not row.erased:
            row.owner, row.owner_known = data.owner, True
        row.version = 1
    if row.version <= 1:  # also after a snapshot of version 1 (an API call ahead of the events)
        _take_profile(row, data)
    _set_status(row, data.status, data.created_at)
    if data.external_ref_set and not row.erased:
        return await _reference_from_master(session, row, lookup, sla_hours, parked)
    row.updated_at = utc_now()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours, parked=parked)  # the row goes at commit
    return row


async def apply_customer_updated(
    *,
    session: AsyncSession,
    data: CustomerUpdated,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    lookup: CustomerLookup | None = None,
    parked: ParkedRefs | None = None,
) -> KnownCustomer:
    row = await _replica_row(session, data.customer_id)
    if data.version >= row.version:
        # The event carries the customer's current owner (set or not), whatever changed; none after erasure.
        if not row.erased:
            row.owner, row.owner_known = data.owner, True
        _take_profile(row, data)
        if data.external_ref_set is None:
            # An event from before external_ref_set, carrying the value itself. `changed` says whether
            # a null external_ref means "cleared"; without it, only a value counts.
            if "external_ref" in data.changed or (not data.changed and data.external_ref is not None):
                row.external_ref = data.external_ref
        elif not data.external_ref_set:
            row.external_ref = None
        elif ("external_ref" in data.changed or not data.changed) and not row.erased:
            return await _reference_from_master(session, row, lookup, sla_hours, parked)
        row.version = data.version
        row.updated_at = utc_now()
    await apply_parked_for(session=session, customer=row, sla_hours=sla_hours, parked=parked)  # the row goes at commit
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
    # Its profile too, as the scoring service forgets it: complaints kept as anonymous history no longer
    # match a segment, team or tier filter.
    row.segment = row.team = row.managed_tier = row.scored_tier = None
    # And its owner: the link from an erased customer to the employee who managed them serves nothing now
    # (known: the owner backfill has nothing to read for it).
    row.owner, row.owner_known = None, True
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
