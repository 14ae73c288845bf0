"""Where the events that trigger follow-ups arrive: a complaint resolved, a customer won back; erasure
removes the customer's pending and scheduled follow-ups. Handlers never commit (the consumer does).

``with_followups`` adds complaint.updated and wraps the status-change and erasure handlers: the existing
handler runs first (the replica learns the new status), then the follow-up is pended in the same unit of
work. Duplicate-safe: one follow-up per triggering event key (the complaint, the status change).
"""

from __future__ import annotations

from typing import Any

from contracts.customer import CustomerErased, CustomerStatusChanged
from contracts.interaction import ComplaintUpdated
from servicekit.clock import utc_now
from servicekit.events.envelope import Received
from servicekit.inbox import Handler, Handlers
from servicekit.unit_of_work import UnitOfWork
from services.retention.followups import triggers
from services.retention.followups.models import Trigger

RESOLVED = "resolved"


async def on_complaint_updated(uow: UnitOfWork, event: Received[ComplaintUpdated]) -> None:
    data = event.data
    if data.status == RESOLVED and data.previous_status != RESOLVED:
        await triggers.triggered(
            uow.session,
            customer_id=data.customer_id,
            trigger=Trigger.complaint_resolved,
            key=data.complaint_id,
            now=utc_now(),
        )


def _after_status_changed(handler: Handler) -> Handler:
    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        await handler(uow, event)
        data: CustomerStatusChanged = event.data
        if triggers.won_back(data.previous_status, data.status):
            await triggers.triggered(
                uow.session,
                customer_id=data.customer_id,
                trigger=Trigger.won_back,
                key=event.id,
                now=utc_now(),
                current_status=data.status,  # the latest change: an older one arriving late pends nothing
            )

    return handle


def _after_erased(handler: Handler) -> Handler:
    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        await handler(uow, event)
        await triggers.erase(uow.session, customer_id=event.data.customer_id)

    return handle


def with_followups(handlers: Handlers) -> Handlers:
    """The handlers plus complaint.updated, the status-change and erasure handlers wrapped for follow-ups."""
    wrapped = dict(handlers)
    wrapped[ComplaintUpdated.event_type] = on_complaint_updated
    for kind, wrap in (
        (CustomerStatusChanged.event_type, _after_status_changed),
        (CustomerErased.event_type, _after_erased),
    ):
        if kind in wrapped:
            wrapped[kind] = wrap(wrapped[kind])
    return wrapped
