"""crm.customer.v1 -> the local customer replica; crm.scoring.v1 score.updated -> its scored value tier.

Each event is safe to apply twice or out of order: the replica keeps the customer version and the time of
its status, and ignores what is older (replica/service.py). A customer arriving with an ERP reference also
releases the ERP/SCM events parked for that reference.
"""

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from servicekit.unit_of_work import UnitOfWork
from services.interaction.inbound.service import ParkedRefs
from services.interaction.replica import service
from services.interaction.replica.directory import CustomerDirectory, CustomerServiceUnavailable, CustomerSnapshot
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import complaint_sla_hours, consumer_settings


@cache
def _directory() -> CustomerDirectory:
    # Customer events no longer carry the external reference (personal data): the replica reads it
    # from the customer master. One client for the consume process's lifetime.
    settings = consumer_settings()
    # A batch's lookup is asked again for a while before its events fall back to one call each: under
    # load, a customer service slow to answer one call for 500 customers answers 500 calls no faster.
    return CustomerDirectory(
        settings.customer_url, timeout_s=settings.customer_timeout_s, batch_wait_s=settings.customer_lookup_wait_s
    )


CUSTOMER_EVENTS = (CustomerCreated, CustomerUpdated, CustomerStatusChanged, CustomerErased)


@dataclass
class PrefetchedCustomers:
    """A consumer batch's customer snapshots, asked for once (None: the customer service does not know it)."""

    by_id: dict[str, CustomerSnapshot | None] = field(default_factory=dict)
    rows: dict[str, KnownCustomer] = field(default_factory=dict)  # the batch's replica rows, held for its handlers


async def prefetch_customers(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Ask the customer service once for every customer whose reference this batch's events need, and
    load the batch's replica rows (those of its customer events and of its score.updated).

    Events never carry the reference, so each customer.created/updated with one would otherwise cost
    one call; asked after the events were received, the answers are at least as new as each event.
    When the customer service is unavailable nothing is prefetched and each event asks on its own.
    """
    held = uow.state(PrefetchedCustomers).rows
    # score.updated: the rows its customers' tiers go on, in one query (a score batch of an import
    # names hundreds of customers; one read each made this consumer the last to catch up).
    scored = {e.data.customer_id for e in events if isinstance(e.data, ScoreUpdated)}
    customer_events = [e.data for e in events if isinstance(e.data, CUSTOMER_EVENTS)]
    if not customer_events:
        if scored:
            held.update(await service.preload_replica_rows(session=uow.session, customer_ids=scored))
        return
    wanted = [
        d.customer_id
        for d in customer_events
        if isinstance(d, CustomerCreated | CustomerUpdated) and d.external_ref_set
    ]
    prefetched = uow.state(PrefetchedCustomers).by_id
    if wanted:
        with contextlib.suppress(CustomerServiceUnavailable):  # then each event asks on its own
            prefetched.update(await _directory().fetch_many(wanted))
    # The batch's replica rows, those of its scores among them (and the parked events their references
    # release), in a few statements, not a few per event: an import's customers arrive thousands at a time.
    # In a process that also serves the API each round trip waits behind its requests: they are few.
    refs = {s.external_ref for s in prefetched.values() if s is not None and s.external_ref}
    held.update(
        await service.preload_replica_rows(
            session=uow.session,
            customer_ids={d.customer_id for d in customer_events} | scored,
            refs=refs,
            parked=uow.state(ParkedRefs),
        )
    )


def _lookup(uow: UnitOfWork) -> Callable[[str], Awaitable[CustomerSnapshot | None]]:
    prefetched = uow.state(PrefetchedCustomers).by_id

    async def lookup(customer_id: str) -> CustomerSnapshot | None:
        if customer_id in prefetched:
            return prefetched[customer_id]
        return await _directory().fetch(customer_id)

    return lookup


async def on_customer_created(uow: UnitOfWork, event: Received[CustomerCreated]) -> None:
    await service.apply_customer_created(
        session=uow.session,
        data=event.data,
        sla_hours=await complaint_sla_hours(uow.session),
        lookup=_lookup(uow),
        parked=uow.state(ParkedRefs),
    )


async def on_customer_updated(uow: UnitOfWork, event: Received[CustomerUpdated]) -> None:
    await service.apply_customer_updated(
        session=uow.session,
        data=event.data,
        sla_hours=await complaint_sla_hours(uow.session),
        lookup=_lookup(uow),
        parked=uow.state(ParkedRefs),
    )


async def on_customer_status_changed(uow: UnitOfWork, event: Received[CustomerStatusChanged]) -> None:
    await service.apply_customer_status_changed(session=uow.session, data=event.data)


async def on_customer_erased(uow: UnitOfWork, event: Received[CustomerErased]) -> None:
    await service.apply_customer_erased(session=uow.session, data=event.data)


async def on_score_updated(uow: UnitOfWork, event: Received[ScoreUpdated]) -> None:
    await service.apply_score(session=uow.session, data=event.data)


HANDLERS: Handlers = {
    CustomerCreated.event_type: on_customer_created,
    CustomerUpdated.event_type: on_customer_updated,
    CustomerStatusChanged.event_type: on_customer_status_changed,
    CustomerErased.event_type: on_customer_erased,
    ScoreUpdated.event_type: on_score_updated,  # the scored value tier (complaint report filter)
}
