"""loyalty.tier_changed keeps the member-tier replica; an erasure removes the customer's row."""

from __future__ import annotations

from typing import Any

from contracts.customer import CustomerErased, LoyaltyTierChanged
from servicekit.events.envelope import Received
from servicekit.inbox import Handler, Handlers
from servicekit.unit_of_work import UnitOfWork
from services.retention.member_tiers import service


async def on_tier_changed(uow: UnitOfWork, event: Received[LoyaltyTierChanged]) -> None:
    # Order-safe: a change older than the stored one is ignored; a redelivery changes nothing.
    await service.on_tier_changed(uow.session, event.data)


def _erasing(handler: Handler) -> Handler:
    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        await handler(uow, event)
        await service.erase(uow.session, event.data.customer_id)  # idempotent

    return handle


def with_member_tiers(handlers: Handlers) -> Handlers:
    """The handlers plus loyalty.tier_changed, with the erasure handler also removing the member tier."""
    out = {kind: _erasing(h) if kind == CustomerErased.event_type else h for kind, h in handlers.items()}
    out[LoyaltyTierChanged.event_type] = on_tier_changed
    return out
