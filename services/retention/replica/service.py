"""The customer replica in a transaction: each customer's replica row and latest score, locked once.

A consumer batch touches the same customers many times over (rules, playbooks, owners): the batch's
preload locks and loads their rows in a few statements into `Replicas`, this transaction's typed state,
and every later lookup finds them there instead of a round trip each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts.customer import CustomerStatusChanged
from contracts.scoring import ScoreUpdated
from servicekit.clock import utc_now
from servicekit.db import hold_until_commit, holds, take_held, update_at_commit
from servicekit.sql import new_row
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.outcomes import read_model as metric_totals
from services.retention.replica.models import Customer, CustomerScore
from services.retention.rules.core import value_at_risk


@dataclass
class Replicas:
    """This transaction's locked rows by customer id; None: no row yet (the lock and the row stay ours)."""

    customers: dict[str, Customer | None] = field(default_factory=dict)
    scores: dict[str, CustomerScore | None] = field(default_factory=dict)


# Latest scores of customers that had none, made in this transaction and added to the session just before
# commit, all at once (added at once, the next per-event flush would insert each alone). Until then every
# lookup of this module finds them in Replicas; code that reads customer_scores with SQL of its own calls
# store_new_scores first.
_NEW_SCORES = "retention.new_scores"


def _add_to_session(session: Session, rows: list[dict[str, Any]]) -> None:
    session.add_all([row["score"] for row in rows])


def store_new_scores(session: AsyncSession) -> None:
    """Put this transaction's new latest-score rows in the session now (the next flush inserts them)."""
    if holds(session, _NEW_SCORES):
        _add_to_session(session.sync_session, take_held(session.sync_session, _NEW_SCORES))


async def known_replica(uow: UnitOfWork, customer_id: str) -> Customer | None:
    """The replica for reading: the transaction's locked one if it has it."""
    customers = uow.state(Replicas).customers
    if customer_id in customers:
        return customers[customer_id]
    return await uow.session.get(Customer, customer_id)


async def replica(uow: UnitOfWork, customer_id: str) -> Customer:
    """The replica for changing: locked once per transaction, created when the customer has none yet."""
    customers = uow.state(Replicas).customers
    if customer_id not in customers:
        customers[customer_id] = await uow.session.get(Customer, customer_id, with_for_update=True)
    found = customers[customer_id]
    if found is None:
        found = customers[customer_id] = Customer(customer_id=customer_id)
        uow.session.add(found)
        metric_totals.touch(uow.session, customer_id)  # known to the metrics from now
    return found


async def known_score(uow: UnitOfWork, customer_id: str) -> CustomerScore | None:
    """The latest score for reading: the transaction's locked one if it has it."""
    scores = uow.state(Replicas).scores
    if customer_id in scores:
        return scores[customer_id]
    store_new_scores(uow.session)  # an earlier unit of work's, in this transaction
    return await uow.session.get(CustomerScore, customer_id)


async def _locked_score(uow: UnitOfWork, customer_id: str) -> CustomerScore | None:
    scores = uow.state(Replicas).scores
    if customer_id not in scores:
        store_new_scores(uow.session)  # an earlier unit of work's, in this transaction
        scores[customer_id] = await uow.session.get(CustomerScore, customer_id, with_for_update=True)
    return scores[customer_id]


async def record_score(uow: UnitOfWork, score: ScoreUpdated) -> CustomerScore | None:
    """Keep the customer's latest score; None if the score is older than the one recorded (ignored).

    Written at commit, with the batch's other scores: later events of the batch read it from `Replicas`.
    """
    computed_at = as_utc(score.computed_at)
    latest = await _locked_score(uow, score.customer_id)
    if latest is not None and as_utc(latest.as_of) > computed_at:
        return None
    if latest is None:
        latest = new_row(CustomerScore, customer_id=score.customer_id, churn_risk=score.current.churn_risk)
        hold_until_commit(uow.session, _NEW_SCORES, [{"score": latest}], _add_to_session)  # see _NEW_SCORES
        uow.state(Replicas).scores[score.customer_id] = latest
    current = score.current
    if latest.value_tier != current.value_tier or inspect(latest).transient:  # the metrics' tier or a new customer
        metric_totals.touch(uow.session, score.customer_id)
    update_at_commit(
        uow.session,
        latest,
        churn_risk=current.churn_risk,
        clv=current.clv,
        value_at_risk=value_at_risk(current),
        value_tier=current.value_tier,
        p_alive=current.p_alive,
        lifecycle_stage=current.lifecycle_stage,
        as_of=computed_at,
        updated_at=utc_now(),
        **({"last_event_at": as_utc(score.last_event_at)} if score.last_event_at is not None else {}),
    )
    return latest


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def churn_time(data: CustomerStatusChanged) -> datetime:
    """When the churn happened: the reported churn day (end of it) if it lies before the change was recorded."""
    at = as_utc(data.changed_at)
    day = getattr(data, "churned_at", None)
    return min(at, end_of(day)) if data.status == "churned" and day is not None else at
