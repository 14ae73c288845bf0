"""Where customer events arrive (created, updated, status changed, erased), and recorded interactions
for the read model. Handlers never commit (the consumer does)."""

from __future__ import annotations

from contracts.customer import (
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from contracts.interaction import InteractionRecorded
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork
from services.retention.lifecycle import service as lifecycle
from services.retention.replica.service import churn_time
from services.retention.reports import facts as read_model
from services.retention.touches.service import Consents


async def on_interaction(uow: UnitOfWork, event: Received[InteractionRecorded]) -> None:
    # Duplicate-safe: the read model keys its facts on the event id.
    await read_model.on_interaction(uow, event)


async def on_customer_created(uow: UnitOfWork, event: Received[CustomerCreated]) -> None:
    # Order-safe: a creation arriving after an update or the erasure changes nothing.
    await lifecycle.on_customer_created(uow=uow, data=event.data)
    await read_model.on_customer_created(uow, event)


async def on_customer_updated(uow: UnitOfWork, event: Received[CustomerUpdated]) -> None:
    # Order-safe: an update at or below the replica's version is ignored.
    previous_owner = await read_model.owner_of(uow.session, event.data.customer_id)
    await lifecycle.on_customer_updated(uow=uow, data=event.data)
    await read_model.on_customer_updated(uow, event, previous_owner=previous_owner)


async def on_status_changed(uow: UnitOfWork, event: Received[CustomerStatusChanged]) -> None:
    # Duplicate-safe by event id; a change older than the latest is kept for metrics only.
    await lifecycle.on_status_changed(uow=uow, event=event)
    await read_model.on_status_changed(uow, event, churn_time(event.data))


async def on_customer_erased(uow: UnitOfWork, event: Received[CustomerErased]) -> None:
    # Idempotent: the second erasure of a customer finds the replica erased and confirms nothing again.
    if await lifecycle.erase_customer(uow=uow, data=event.data):
        uow.forget(Consents)  # the consent replica is gone
        await read_model.erase(uow, event.data.customer_id)
