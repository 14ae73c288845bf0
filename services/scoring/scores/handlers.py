"""Event handlers: each applies one event to the customer's features and rescores.

"Now" for every time window is the event's own business time (occurred_at, changed_at, answered_at;
the envelope time where the contract has none), never the wall clock, and never earlier than the latest
event already applied for the customer (FeatureState.as_of). Replaying the same events therefore
rebuilds the same features and the same scores; only computed_at records when the work was done.

Duplicates: the inbox drops a re-delivered event id; features.py drops the same interaction, survey
answer or complaint close arriving again under a new id. Order: the first event about a customer
creates its features row, whether or not customer.created has arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from contracts.common import InteractionType
from contracts.customer import (
    ConsentChanged,
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from contracts.interaction import (
    ComplaintOverdue,
    ComplaintUpdated,
    InteractionRecorded,
    SurveyAnswered,
)
from servicekit.events.envelope import Received
from servicekit.inbox import BatchHook, Handler, Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import feature_rows, features, service
from services.scoring.settings import get_settings


@dataclass(frozen=True, slots=True)
class Feed:
    """How one event type feeds a customer's features."""

    change: Callable[[Any], service.Change]  # the event's data -> its change to the features
    # Its business time. None: the event changes the profile, not the history (customer.*), and is scored
    # as of the customer's latest event (service.apply_event's profile_only), the envelope time without one.
    at: Callable[[Any], datetime] | None = None
    rescore: Callable[[Any], bool] = lambda _: True  # whether a change of the features rescores
    poison_if_invalid: bool = False  # a ValueError from the change: the event can never apply
    then: Callable[[UnitOfWork, Any], None] | None = None  # after it rescored


def _customer_created(d: CustomerCreated) -> service.Change:
    return partial(
        features.customer_upserted,
        status=d.status,
        segment=d.segment,
        attributes=d.attributes,
        version=1,
        fields_changed=frozenset({"segment", "attributes"}),
        owner=d.owner,
        with_owner=True,
        # Imported already churned (or won back): the day of the last churn is the training label's date.
        churned_at=features.churn_moment(d.churned_at),
    )


def _interaction(d: InteractionRecorded) -> service.Change:
    # Survey interactions are skipped by features.record_interaction: survey.answered carries the score,
    # so counting both would count one answer twice.
    return partial(
        features.record_interaction,
        interaction_id=d.interaction_id,
        type=d.type,
        occurred_at=d.occurred_at,
        amount=None if d.amount is None else float(d.amount),
        severity=d.severity,
        sentiment=d.sentiment,
        category=d.category,
    )


def _record_purchase(uow: UnitOfWork, d: InteractionRecorded) -> None:
    if d.type == InteractionType.purchase:
        service.record_purchase(
            uow=uow,
            interaction_id=d.interaction_id,
            customer_id=d.customer_id,
            occurred_at=d.occurred_at,
            amount=float(d.amount or 0),
        )


FEEDS: dict[str, Feed] = {
    # crm.customer.v1: a new customer is scored at once (churn risk from the active model or the rules,
    # health, value tier and stage from its attributes and whatever history it has); a new profile too,
    # since a model over attributes must see it, but a change of owner or name scores nothing new.
    CustomerCreated.event_type: Feed(_customer_created),
    CustomerUpdated.event_type: Feed(
        lambda d: partial(
            features.customer_upserted,
            segment=d.segment,
            attributes=d.attributes,
            version=d.version,
            fields_changed=frozenset(d.changed) if d.changed else None,
            owner=d.owner,
            with_owner=True,
        ),
        rescore=lambda d: not d.changed or bool({"segment", "attributes"} & set(d.changed)),
    ),
    # Consent is a profile fact for the segment builder: it changes no score.
    ConsentChanged.event_type: Feed(
        lambda d: partial(
            features.consent_changed,
            channels={channel.value: c.status.value for channel, c in d.channels.items()},
            version=d.version,
        ),
        rescore=lambda _: False,
    ),
    CustomerStatusChanged.event_type: Feed(
        lambda d: partial(
            features.customer_status_changed,
            status=d.status,
            changed_at=d.changed_at,
            churned_at=features.churn_moment(d.churned_at, d.changed_at),
        ),
        rescore=lambda _: False,
    ),
    # crm.interaction.v1: every change rescores.
    InteractionRecorded.event_type: Feed(_interaction, at=lambda d: d.occurred_at, then=_record_purchase),
    ComplaintUpdated.event_type: Feed(
        lambda d: partial(
            features.complaint_updated,
            complaint_id=d.complaint_id,
            status=d.status,
            severity=d.severity,
            changed_at=d.changed_at,
        ),
        at=lambda d: d.changed_at,
    ),
    # When the complaint became overdue is its due time (the watcher notices within seconds of it): a
    # complaint of an imported history went overdue back then, not when the watcher first saw it.
    ComplaintOverdue.event_type: Feed(
        lambda d: partial(
            features.complaint_overdue, complaint_id=d.complaint_id, severity=d.severity, at=features.utc(d.due_at)
        ),
        at=lambda d: features.utc(d.due_at),
    ),
    SurveyAnswered.event_type: Feed(
        lambda d: partial(
            features.survey_answered,
            interaction_id=d.interaction_id,
            survey=d.survey,
            score=d.score,
            answered_at=d.answered_at,
        ),
        at=lambda d: d.answered_at,
        poison_if_invalid=True,  # a score outside its scale will never become valid
    ),
}


def is_history(at: datetime, horizon_days: float, now: datetime | None = None) -> bool:
    """Whether an event's business time lies further back than the history horizon (0: nothing is history)."""
    if horizon_days <= 0:
        return False
    return features.utc(at) < (now or datetime.now(UTC)) - timedelta(days=horizon_days)


def feeding(feed: Feed) -> Handler:
    """The handler that applies an event to the customer's features as `feed` says and, if they changed, rescores."""

    async def handle(uow: UnitOfWork, event: Received[Any]) -> None:
        d = event.data
        settings = get_settings()
        at = event.time if feed.at is None else feed.at(d)
        try:
            scored = await service.apply_event(
                uow=uow,
                customer_id=d.customer_id,
                change=feed.change(d),
                event_id=event.id,
                event_type=event.envelope.type,
                at=at,
                weights=settings.weights,
                rescore=feed.rescore(d),
                profile_only=feed.at is None,
                history=feed.at is not None and is_history(at, settings.history_horizon_days),
            )
        except ValueError as exc:
            if not feed.poison_if_invalid:
                raise
            raise PoisonEvent(str(exc)) from exc
        if scored and feed.then is not None:
            feed.then(uow, d)

    return handle


async def on_customer_erased(uow: UnitOfWork, event: Received[CustomerErased]) -> None:
    await service.erase_customer(uow=uow, customer_id=event.data.customer_id)


HANDLERS: Handlers = {
    **{event_type: feeding(feed) for event_type, feed in FEEDS.items()},
    CustomerErased.event_type: on_customer_erased,
}


# One query for the batch's features rows, instead of one per event.
async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    await feature_rows.preload(uow, events)


BEFORE_BATCH: BatchHook = preload
