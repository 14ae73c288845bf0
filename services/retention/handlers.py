"""Consumed events -> alert rules. Handlers never commit; the consumer commits with the inbox row."""

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.events.contracts.interaction import ComplaintOpened
from servicekit.events.contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from services.retention import service


async def on_score_updated(session: AsyncSession, event: Received[ScoreUpdated]) -> None:
    # Duplicate-safe: the alert remembers the ids of the events applied to it, and an older score is ignored.
    await service.handle_event(session=session, event=event)


async def on_complaint_opened(session: AsyncSession, event: Received[ComplaintOpened]) -> None:
    await service.handle_event(session=session, event=event)


HANDLERS: Handlers = {
    ScoreUpdated.event_type: on_score_updated,
    ComplaintOpened.event_type: on_complaint_opened,
}
