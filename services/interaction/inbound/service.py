"""Inbound ERP/SCM events: recorded as interactions, or parked until their customer is known. Never commits."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import ColumnElement, func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from contracts.erp import InboundEvent
from contracts.registry import REGISTRY
from servicekit.clock import utc_now
from servicekit.events.envelope import CloudEvent, Received
from servicekit.inbox import PoisonEvent
from servicekit.inbox.consumer import is_transient
from servicekit.pagination import MAX_PAGE
from servicekit.sql import chunks, dialect_insert
from services.interaction.inbound import erp
from services.interaction.inbound.models import ParkedEvent
from services.interaction.interactions.models import Interaction
from services.interaction.interactions.store import get_interaction, store_one, stored_external_ids
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import DEFAULT_SLA_HOURS

log = logging.getLogger("interaction.service")


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
    *,
    session: AsyncSession,
    event: Received[InboundEvent],
    sla_hours: Mapping[str, float],
    parked: ParkedRefs | None = None,
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
        if parked is not None:
            parked.without.discard(data.customer_ref)
        return None
    if customer.erased:
        raise PoisonEvent(f"customer {customer.customer_id} was erased")
    return await _record_for(session, data, customer.customer_id, sla_hours)


async def _record_for(
    session: AsyncSession, data: InboundEvent, customer_id: str, sla_hours: Mapping[str, float]
) -> Interaction:
    interaction_data = erp.to_interaction(data, customer_id)
    assert interaction_data.external_id is not None
    stored = await stored_external_ids(session, [interaction_data.external_id])
    if interaction_data.external_id in stored:  # a repeat of an event already applied
        return await get_interaction(session=session, interaction_id=stored[interaction_data.external_id][0])
    interaction, _ = await store_one(session, interaction_data, sla_hours, stored)
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


@dataclass
class ParkedRefs:
    """What a unit of work knows of parked events: the references it found none for (preload_parked), so
    apply_parked_for asks only for the others. Parking an event in the transaction takes its reference out."""

    without: set[str] = field(default_factory=set)


async def preload_parked(*, session: AsyncSession, refs: Collection[str], parked: ParkedRefs) -> None:
    """Find in one query which of these references have parked events, so apply_parked_for asks only
    for those in this transaction (a consumer batch of new customers, most of which have none)."""
    if not refs:
        return
    with_parked: set[str] = set()
    for chunk in chunks(sorted(refs)):
        rows = await session.execute(
            select(ParkedEvent.customer_ref).where(col(ParkedEvent.customer_ref).in_(chunk)).distinct()
        )
        with_parked.update(rows.scalars())
    parked.without.update(set(refs) - with_parked)


async def apply_parked_for(
    *,
    session: AsyncSession,
    customer: KnownCustomer,
    sla_hours: Mapping[str, float] = DEFAULT_SLA_HOURS,
    parked: ParkedRefs | None = None,
) -> int:
    """Apply and delete the parked events naming this customer's reference; returns how many were applied.

    Each runs in a savepoint: one that fails stays parked (attempts + 1, last_error) without undoing
    the others or the caller's change.
    """
    ref = customer.external_ref
    if ref is None or customer.erased or (parked is not None and ref in parked.without):
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
