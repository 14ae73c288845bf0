"""The retention consumer's handlers by event type, and its batch preload, from the features' handlers modules."""

from collections.abc import Sequence
from typing import Any

from contracts.customer import (
    ConsentChanged,
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from contracts.interaction import (
    ComplaintOpened,
    ComplaintOverdue,
    InteractionRecorded,
    SurveyAnswered,
)
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import BatchHook, Claim, ClaimingHook, Handler, Handlers
from servicekit.outbox.writer import write_at_commit
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.alerts import handlers as alerts
from services.retention.alerts.service import store_new_alerts
from services.retention.campaigns.handlers import with_redemptions
from services.retention.followups.handlers import with_followups
from services.retention.lifecycle import handlers as lifecycle
from services.retention.member_tiers.handlers import with_member_tiers
from services.retention.replica.service import store_new_scores
from services.retention.touches import handlers as touches
from services.retention.waits.handlers import with_wakes


def _after_new_rows_stored(handler: Handler) -> Handler:
    """The handler, run after the batch's new alerts and latest scores (written at commit) are put in the
    session: the customer's lifecycle (owner change, churn, erasure) reads and changes them with SQL of its own."""

    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        store_new_alerts(uow.session)
        store_new_scores(uow.session)
        await handler(uow, event)

    return handle


HANDLERS: Handlers = {
    ConsentChanged.event_type: touches.on_consent_changed,
    ScoreUpdated.event_type: alerts.on_signal,
    ComplaintOpened.event_type: alerts.on_signal,
    ComplaintOverdue.event_type: alerts.on_signal,
    SurveyAnswered.event_type: alerts.on_signal,
    InteractionRecorded.event_type: lifecycle.on_interaction,
    CustomerCreated.event_type: _after_new_rows_stored(lifecycle.on_customer_created),
    CustomerUpdated.event_type: _after_new_rows_stored(lifecycle.on_customer_updated),
    CustomerStatusChanged.event_type: _after_new_rows_stored(lifecycle.on_status_changed),
    CustomerErased.event_type: _after_new_rows_stored(lifecycle.on_customer_erased),
}
# waits ending early; the member-tier replica; follow-ups after events; offer redemptions
HANDLERS = with_redemptions(with_followups(with_wakes(with_member_tiers(HANDLERS))))


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """The batch's preload for events claimed already: the events go to the outbox in one statement at
    commit; their signals are stored and the rows they will touch locked and loaded (replicas, latest
    scores, unresolved alerts, consent, the read model's, who waits) in two statements, not per event."""
    write_at_commit(uow.session)
    await batch_rows.preload(uow, events)


async def claim_and_preload(uow: UnitOfWork, events: Sequence[Received[Any]], claim: Claim) -> set[str]:
    """The preload with the batch's inbox claim, which on PostgreSQL rides in its first statement."""
    write_at_commit(uow.session)
    return await batch_rows.claim_and_preload(uow, events, claim)


BEFORE_BATCH: BatchHook = ClaimingHook(claim_and_preload)
