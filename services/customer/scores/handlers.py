"""crm.scoring.v1 score.updated -> the customer's scored value tier (the reports' tier filter).

A score for a customer this service does not hold is ignored: customers are never deleted here and
the scoring service learns of a customer from its customer.created, so only a malformed event names
one. A score for an erased customer is ignored too.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from servicekit.unit_of_work import UnitOfWork
from services.customer.scores import service


@dataclass
class AppliedScores:
    """The events of this transaction's batch whose scores apply_batch_scores wrote already."""

    ids: set[str] = field(default_factory=set)


async def apply_batch_scores(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Before a consumer batch's handlers: its score.updated in one statement run (service.apply_scores),
    where each event's own UPDATE cost a statement and a round trip per event."""
    scores = [e for e in events if isinstance(e.data, ScoreUpdated)]
    if scores:
        await service.apply_scores(session=uow.session, scores=[e.data for e in scores])
        uow.state(AppliedScores).ids.update(e.envelope.id for e in scores)


async def on_score_updated(uow: UnitOfWork, event: Received[ScoreUpdated]) -> None:
    if event.envelope.id in uow.state(AppliedScores).ids:
        return  # written with its batch
    await service.apply_score(session=uow.session, data=event.data)


HANDLERS: Handlers = {ScoreUpdated.event_type: on_score_updated}
