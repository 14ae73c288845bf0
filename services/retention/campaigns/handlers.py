"""Where offer redemptions arrive: a purchase (interaction.recorded) that carries an offer's code, as the
ERP order that became it did. Handlers never commit (the consumer does).

``with_redemptions`` wraps the interaction.recorded handler: the existing handler runs first (the read
model's order fact), then a coded purchase is recorded as a redemption, keyed by the event id, so a
redelivered event records nothing twice. Purchases without a code cost no statement.
"""

from __future__ import annotations

from typing import Any

from contracts.common import InteractionType
from contracts.interaction import InteractionRecorded
from servicekit.events.envelope import Received
from servicekit.inbox import Handler, Handlers
from servicekit.sql import dialect_insert
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.campaigns.models import OfferRedemption


async def record_redemption(uow: UnitOfWork, event: Received[InteractionRecorded]) -> None:
    data = event.data
    if data.type != InteractionType.purchase or not data.offer_code:
        return
    table = OfferRedemption.__table__  # type: ignore[attr-defined]
    row = {
        "event_id": event.id,
        "customer_id": data.customer_id,
        "offer_code": data.offer_code,
        "amount": float(data.amount) if data.amount is not None else None,
        "at": as_utc(data.occurred_at),
    }
    await uow.session.execute(dialect_insert(uow.session)(table).values(row).on_conflict_do_nothing())


def _redeeming(handler: Handler) -> Handler:
    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        await handler(uow, event)
        await record_redemption(uow, event)

    return handle


def with_redemptions(handlers: Handlers) -> Handlers:
    """The handlers, interaction.recorded's wrapped to record coded purchases as redemptions."""
    kind = InteractionRecorded.event_type
    return {k: _redeeming(h) if k == kind else h for k, h in handlers.items()}
