"""Consumed events -> alerts, outcomes and the customer replica. Handlers never commit (the consumer does)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from servicekit.events.contracts.customer import (
    ConsentChanged,
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from servicekit.events.contracts.interaction import (
    ComplaintOpened,
    ComplaintOverdue,
    InteractionRecorded,
    SurveyAnswered,
)
from servicekit.events.contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import BatchHook, Handlers
from servicekit.unit_of_work import UnitOfWork
from services.retention import history, read_model, service, touches
from services.retention.member_tiers.handlers import with_member_tiers
from services.retention.metrics import HISTORY_SIGNALS
from services.retention.settings import get_settings
from services.retention.waits.handlers import with_wakes


async def on_signal(
    uow: UnitOfWork, event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered]
) -> None:
    # Duplicate-safe: the signal log keys on the event id, alerts remember the ids applied to them, and
    # an older score than the latest is ignored. History older than the horizon raises no alert.
    horizon = get_settings().alert_history_horizon_days
    live = not history.is_history(event.data, now=datetime.now(UTC), horizon_days=horizon)
    if not live:
        HISTORY_SIGNALS.inc()
    await service.handle_event(session=uow.session, event=event, raise_alerts=live)
    await read_model.on_signal(uow.session, event)  # duplicate-safe: keyed on the event id


async def on_interaction(uow: UnitOfWork, event: Received[InteractionRecorded]) -> None:
    # Duplicate-safe: the read model keys its facts on the event id.
    await read_model.on_interaction(uow.session, event)


async def on_customer_created(uow: UnitOfWork, event: Received[CustomerCreated]) -> None:
    # Order-safe: a creation arriving after an update or the erasure changes nothing.
    await service.on_customer_created(session=uow.session, data=event.data)
    await read_model.on_customer_created(uow.session, event)


async def on_customer_updated(uow: UnitOfWork, event: Received[CustomerUpdated]) -> None:
    # Order-safe: an update at or below the replica's version is ignored.
    previous_owner = await read_model.owner_of(uow.session, event.data.customer_id)
    await service.on_customer_updated(session=uow.session, data=event.data)
    await read_model.on_customer_updated(uow.session, event, previous_owner=previous_owner)


async def on_status_changed(uow: UnitOfWork, event: Received[CustomerStatusChanged]) -> None:
    # Duplicate-safe by event id; a change older than the latest is kept for metrics only.
    await service.on_status_changed(session=uow.session, event=event)
    await read_model.on_status_changed(uow.session, event, service.churn_time(event.data))


async def on_customer_erased(uow: UnitOfWork, event: Received[CustomerErased]) -> None:
    # Idempotent: the second erasure of a customer finds the replica erased and confirms nothing again.
    if await service.erase_customer(session=uow.session, data=event.data):
        await read_model.erase(uow.session, event.data.customer_id)


async def on_consent_changed(uow: UnitOfWork, event: Received[ConsentChanged]) -> None:
    # Order-safe: a version at or below the replica's is ignored.
    await touches.on_consent_changed(session=uow.session, data=event.data)


HANDLERS: Handlers = {
    ConsentChanged.event_type: on_consent_changed,
    ScoreUpdated.event_type: on_signal,
    ComplaintOpened.event_type: on_signal,
    ComplaintOverdue.event_type: on_signal,
    SurveyAnswered.event_type: on_signal,
    InteractionRecorded.event_type: on_interaction,
    CustomerCreated.event_type: on_customer_created,
    CustomerUpdated.event_type: on_customer_updated,
    CustomerStatusChanged.event_type: on_status_changed,
    CustomerErased.event_type: on_customer_erased,
}
HANDLERS = with_wakes(with_member_tiers(HANDLERS))  # waits that end early; the member-tier replica


# One query each for the batch's replicas, latest scores and unresolved alerts, instead of per event.
async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    await service.preload(uow.session, events)


BEFORE_BATCH: BatchHook = preload
