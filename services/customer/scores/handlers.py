"""crm.scoring.v1 score.updated -> the customer's scored value tier (the reports' tier filter).

A score for a customer this service does not hold is ignored: customers are never deleted here and
the scoring service learns of a customer from its customer.created, so only a malformed event names
one. A score for an erased customer is ignored too.
"""

from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from servicekit.unit_of_work import UnitOfWork
from services.customer.scores import service


async def on_score_updated(uow: UnitOfWork, event: Received[ScoreUpdated]) -> None:
    await service.apply_score(session=uow.session, data=event.data)


HANDLERS: Handlers = {ScoreUpdated.event_type: on_score_updated}
