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

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from contracts.common import InteractionType
from contracts.customer import (
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
from servicekit.inbox import BatchHook, Handlers, PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import features, service
from services.scoring.scores.rules import RuleWeights
from services.scoring.settings import get_settings


def _weights() -> RuleWeights:
    return get_settings().weights


# ---- crm.customer.v1: a new customer, or a new profile, is scored at once ----------------------------


async def on_customer_created(uow: UnitOfWork, event: Received[CustomerCreated]) -> None:
    d = event.data
    change = partial(
        features.customer_upserted,
        status=d.status,
        segment=d.segment,
        attributes=d.attributes,
        version=1,
        fields_changed=frozenset({"segment", "attributes"}),
        # Imported already churned (or won back): the day of the last churn is the training label's date.
        churned_at=features.churn_moment(d.churned_at),
    )
    # Scored from the moment it exists: churn risk (the active model's, the rules otherwise), health,
    # value tier and stage from its attributes and whatever history it has.
    await _apply_customer(uow, event, change, rescore=True)


async def on_customer_updated(uow: UnitOfWork, event: Received[CustomerUpdated]) -> None:
    d = event.data
    change = partial(
        features.customer_upserted,
        segment=d.segment,
        attributes=d.attributes,
        version=d.version,
        fields_changed=frozenset(d.changed) if d.changed else None,
    )
    # A model over attributes must see a changed profile; a change of owner or name scores nothing new.
    profile = not d.changed or bool({"segment", "attributes"} & set(d.changed))
    await _apply_customer(uow, event, change, rescore=profile)


async def on_customer_status_changed(uow: UnitOfWork, event: Received[CustomerStatusChanged]) -> None:
    d = event.data
    change = partial(
        features.customer_status_changed,
        status=d.status,
        changed_at=d.changed_at,
        churned_at=features.churn_moment(d.churned_at, d.changed_at),
    )
    await _apply_customer(uow, event, change)


async def on_customer_erased(uow: UnitOfWork, event: Received[CustomerErased]) -> None:
    await service.erase_customer(uow=uow, customer_id=event.data.customer_id)


async def _apply_customer(uow: UnitOfWork, event: Received, change: service.Change, *, rescore: bool = False) -> None:
    await service.apply_event(
        uow=uow,
        customer_id=event.data.customer_id,
        change=change,
        event_id=event.id,
        event_type=event.envelope.type,
        at=event.time,
        weights=_weights(),
        rescore=rescore,
        profile_only=True,
    )


# ---- crm.interaction.v1: every change rescores ---------------------------------------------------------


async def on_interaction_recorded(uow: UnitOfWork, event: Received[InteractionRecorded]) -> None:
    d = event.data
    # Survey interactions are skipped by features.record_interaction: survey.answered carries the score,
    # so counting both would count one answer twice.
    change = partial(
        features.record_interaction,
        interaction_id=d.interaction_id,
        type=d.type,
        occurred_at=d.occurred_at,
        amount=None if d.amount is None else float(d.amount),
        severity=d.severity,
        sentiment=d.sentiment,
        category=d.category,
    )
    scored = await _rescore(uow, event, change, at=d.occurred_at)
    if scored and d.type == InteractionType.purchase:
        service.record_purchase(
            uow=uow,
            interaction_id=d.interaction_id,
            customer_id=d.customer_id,
            occurred_at=d.occurred_at,
            amount=float(d.amount or 0),
        )


async def on_complaint_updated(uow: UnitOfWork, event: Received[ComplaintUpdated]) -> None:
    d = event.data
    change = partial(
        features.complaint_updated,
        complaint_id=d.complaint_id,
        status=d.status,
        severity=d.severity,
        changed_at=d.changed_at,
    )
    await _rescore(uow, event, change, at=d.changed_at)


async def on_complaint_overdue(uow: UnitOfWork, event: Received[ComplaintOverdue]) -> None:
    d = event.data
    # When the complaint became overdue is its due time (the watcher notices within seconds of it): a
    # complaint of an imported history went overdue back then, not when the watcher first saw it.
    at = features.utc(d.due_at)
    change = partial(features.complaint_overdue, complaint_id=d.complaint_id, severity=d.severity, at=at)
    await _rescore(uow, event, change, at=at)


async def on_survey_answered(uow: UnitOfWork, event: Received[SurveyAnswered]) -> None:
    d = event.data
    change = partial(
        features.survey_answered,
        interaction_id=d.interaction_id,
        survey=d.survey,
        score=d.score,
        answered_at=d.answered_at,
    )
    try:
        await _rescore(uow, event, change, at=d.answered_at)
    except ValueError as exc:  # a score outside its scale will never become valid
        raise PoisonEvent(str(exc)) from exc


async def _rescore(uow: UnitOfWork, event: Received, change: service.Change, *, at: datetime) -> bool:
    return await service.apply_event(
        uow=uow,
        customer_id=event.data.customer_id,
        change=change,
        event_id=event.id,
        event_type=event.envelope.type,
        at=at,
        weights=_weights(),
    )


HANDLERS: Handlers = {
    CustomerCreated.event_type: on_customer_created,
    CustomerUpdated.event_type: on_customer_updated,
    CustomerStatusChanged.event_type: on_customer_status_changed,
    CustomerErased.event_type: on_customer_erased,
    InteractionRecorded.event_type: on_interaction_recorded,
    ComplaintUpdated.event_type: on_complaint_updated,
    ComplaintOverdue.event_type: on_complaint_overdue,
    SurveyAnswered.event_type: on_survey_answered,
}


# One query for the batch's features rows, instead of one per event.
async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    await service.preload(uow, events)


BEFORE_BATCH: BatchHook = preload
