"""Events that end waits early wake the customer's waiting enrolments (docs/sequences.md#waits-that-end-early).

``with_wakes`` wraps the retention handlers of those event types: the existing handler runs first (an
order reaches the read model, a complaint or an answer the signal log, which the engine reads as facts),
then the customer's enrolments waiting for that event are made due now, in the same unit of work.
Duplicate-safe: a redelivered event makes an already-due timer due again, which changes nothing.
The batch preload reads once which of a batch's customers have a registered wait (``wanted``, ``loaded``),
so the events of every other customer cost no statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.common import InteractionType
from contracts.interaction import ComplaintOpened, InteractionRecorded, SurveyAnswered
from servicekit.clock import utc_now
from servicekit.events.envelope import Received
from servicekit.inbox import Handler, Handlers
from servicekit.unit_of_work import UnitOfWork
from services.retention.waits import service


def wait_event(data: Any) -> str | None:
    """The sequences.WAIT_EVENTS name an event stands for, if any."""
    if isinstance(data, InteractionRecorded):
        return "purchased" if data.type == InteractionType.purchase else None
    if isinstance(data, ComplaintOpened):
        return "complaint_opened"
    if isinstance(data, SurveyAnswered):
        return "survey_answered"
    return None


@dataclass
class WaitingCustomers:
    """Which of a consumer batch's customers have a registered wait (None: not preloaded, so ask per event)."""

    ids: set[str] | None = None

    def may_wait(self, customer_id: str) -> bool:
        return self.ids is None or customer_id in self.ids


def wanted(events: Sequence[Received[Any]]) -> list[str]:
    """The customers of a batch's waking events, sorted: the batch preload reads which have a registered wait
    (services/retention/batch_rows.py) and keeps them with `loaded`."""
    return sorted({e.data.customer_id for e in events if wait_event(e.data) is not None})


def loaded(uow: UnitOfWork, waiting: set[str]) -> None:
    uow.state(WaitingCustomers).ids = waiting


def waking(handler: Handler) -> Handler:
    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        await handler(uow, event)
        name = wait_event(event.data)
        if name is not None and uow.state(WaitingCustomers).may_wait(event.data.customer_id):
            await service.wake(uow.session, customer_id=event.data.customer_id, event=name, now=utc_now())

    return handle


WAKING_TYPES = (InteractionRecorded.event_type, ComplaintOpened.event_type, SurveyAnswered.event_type)


def with_wakes(handlers: Handlers) -> Handlers:
    """The handlers, those of the waking event types wrapped to wake waiting enrolments too."""
    return {kind: waking(h) if kind in WAKING_TYPES else h for kind, h in handlers.items()}
