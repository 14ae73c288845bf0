"""Consumed events -> alerts, outcomes and the customer replica. Handlers never commit (the consumer does)."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

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
from services.retention import history, read_model, service, touches
from services.retention.metrics import HISTORY_SIGNALS
from services.retention.settings import get_settings


async def on_signal(
    session: AsyncSession, event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered]
) -> None:
    # Duplicate-safe: the signal log keys on the event id, alerts remember the ids applied to them, and
    # an older score than the latest is ignored. History older than the horizon raises no alert.
    horizon = get_settings().alert_history_horizon_days
    live = not history.is_history(event.data, now=datetime.now(UTC), horizon_days=horizon)
    if not live:
        HISTORY_SIGNALS.inc()
    await service.handle_event(session=session, event=event, raise_alerts=live)
    await read_model.on_signal(session, event)  # duplicate-safe: keyed on the event id


async def on_interaction(session: AsyncSession, event: Received[InteractionRecorded]) -> None:
    # Duplicate-safe: the read model keys its facts on the event id.
    await read_model.on_interaction(session, event)


async def on_customer_created(session: AsyncSession, event: Received[CustomerCreated]) -> None:
    # Order-safe: a creation arriving after an update or the erasure changes nothing.
    await service.on_customer_created(session=session, data=event.data)
    await read_model.on_customer_created(session, event)


async def on_customer_updated(session: AsyncSession, event: Received[CustomerUpdated]) -> None:
    # Order-safe: an update at or below the replica's version is ignored.
    previous_owner = await read_model.owner_of(session, event.data.customer_id)
    await service.on_customer_updated(session=session, data=event.data)
    await read_model.on_customer_updated(session, event, previous_owner=previous_owner)


async def on_status_changed(session: AsyncSession, event: Received[CustomerStatusChanged]) -> None:
    # Duplicate-safe by event id; a change older than the latest is kept for metrics only.
    await service.on_status_changed(session=session, event=event)
    await read_model.on_status_changed(session, event, service.churn_time(event.data))


async def on_customer_erased(session: AsyncSession, event: Received[CustomerErased]) -> None:
    # Idempotent: the second erasure of a customer finds the replica erased and confirms nothing again.
    if await service.erase_customer(session=session, data=event.data):
        await read_model.erase(session, event.data.customer_id)


async def on_consent_changed(session: AsyncSession, event: Received[ConsentChanged]) -> None:
    # Order-safe: a version at or below the replica's is ignored.
    await touches.on_consent_changed(session=session, data=event.data)


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

# One query each for the batch's replicas, latest scores and unresolved alerts, instead of per event.
BEFORE_BATCH: BatchHook = service.preload
