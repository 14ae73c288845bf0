"""Retention domain functions: they change alerts and enqueue events in the caller's transaction, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.events.contracts.common import Severity
from servicekit.events.contracts.interaction import ComplaintOpened
from servicekit.events.contracts.retention import AlertEvent, AlertRaised, AlertResolved, AlertUpdated
from servicekit.events.contracts.scoring import Factor, ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from services.retention.models import (
    ACKNOWLEDGE_FROM,
    EVENT_IDS_KEPT,
    RESOLVE_FROM,
    Alert,
    AlertStatus,
    CustomerScore,
    Outcome,
    as_utc,
    open_slot,
    utc_now,
)
from services.retention.rules import RuleSet, Trigger, evaluate, value_at_risk, worse
from services.retention.settings import get_settings

MAX_PAGE = 200

# ---- rules and triggers --------------------------------------------------------------------------


async def load_rules(*, session: AsyncSession) -> RuleSet:
    """The rules in force. Built in and tuned by settings for now: the one place stored rules will plug in."""
    del session  # stored rules will be read through it
    return RuleSet.from_settings(get_settings())


async def handle_event(*, session: AsyncSession, event: Received[ScoreUpdated | ComplaintOpened]) -> list[Alert]:
    """Evaluate the rules on one consumed event and raise or update alerts; returns the alerts it changed."""
    data = event.data
    if isinstance(data, ScoreUpdated) and not await record_score(session=session, score=data):
        return []  # an older score than one already seen: it must neither raise nor refresh anything
    rules = await load_rules(session=session)
    changed = []
    for trigger in evaluate(data, rules):
        alert = await apply_trigger(session=session, customer_id=data.customer_id, trigger=trigger, event_id=event.id)
        if alert is not None:
            changed.append(alert)
    return changed


async def record_score(*, session: AsyncSession, score: ScoreUpdated) -> bool:
    """Keep the customer's latest score and refresh its unresolved alerts (silently) with the new risk.

    Returns False if the score is older than the one already recorded (out of order), and ignores it.
    """
    computed_at = as_utc(score.computed_at)
    latest = await session.get(CustomerScore, score.customer_id, with_for_update=True)
    if latest is not None and as_utc(latest.as_of) > computed_at:
        return False
    if latest is None:
        latest = CustomerScore(customer_id=score.customer_id, churn_risk=score.current.churn_risk)
        session.add(latest)
    latest.churn_risk = score.current.churn_risk
    latest.clv = score.current.clv
    latest.value_at_risk = value_at_risk(score.current)
    latest.value_tier = score.current.value_tier
    latest.as_of = computed_at
    latest.updated_at = utc_now()
    # Flushed now, so a later event of the same batch (same session) sees this score.
    await session.flush()
    for alert in await _unresolved_alerts(session, score.customer_id):
        if _take_risk(alert, latest):
            alert.updated_at = utc_now()
    return True


async def apply_trigger(*, session: AsyncSession, customer_id: str, trigger: Trigger, event_id: str) -> Alert | None:
    """Raise the alert for (customer, reason), or count one more trigger on the unresolved one.

    Returns the alert, or None when this event was already applied to it (a redelivery under a new
    offset, on top of the inbox's own de-duplication).
    """
    slot = open_slot(customer_id, trigger.reason)
    alert = (await session.execute(select(Alert).where(Alert.open_slot == slot).with_for_update())).scalar_one_or_none()
    latest = await session.get(CustomerScore, customer_id)
    observed_at = as_utc(trigger.observed_at)
    if alert is None:
        alert = Alert(
            customer_id=customer_id,
            reason=trigger.reason,
            severity=trigger.severity,
            first_triggered_at=observed_at,
            last_triggered_at=observed_at,
            factors=_factors(trigger.factors),
            event_ids=[event_id],
            open_slot=slot,
        )
        _take_risk(alert, latest)
        session.add(alert)
        # Flushed at once so a second trigger for the same slot in this batch finds this alert.
        await session.flush()
        await enqueue(session, alert_event(AlertRaised, alert))
        return alert

    if event_id in alert.event_ids:
        return None
    alert.trigger_count += 1
    alert.severity = worse(alert.severity, trigger.severity)  # an unresolved alert only escalates
    if observed_at >= as_utc(alert.last_triggered_at):
        alert.last_triggered_at = observed_at
        alert.factors = _factors(trigger.factors)
    alert.first_triggered_at = min(as_utc(alert.first_triggered_at), observed_at)
    # Reassign (never mutate) JSON lists: the ORM only sees assignments.
    alert.event_ids = [*alert.event_ids, event_id][-EVENT_IDS_KEPT:]
    _take_risk(alert, latest)
    alert.updated_at = utc_now()
    await session.flush()
    # A snoozed alert takes the new evidence without paging anyone again.
    if alert.status != AlertStatus.snoozed:
        await enqueue(session, alert_event(AlertUpdated, alert))
    return alert


def _take_risk(alert: Alert, score: CustomerScore | None) -> bool:
    """Copy the latest churn risk and value at risk onto the alert unless it already has newer ones."""
    if score is None:
        return False
    as_of = as_utc(score.as_of)
    if alert.risk_as_of is not None and as_utc(alert.risk_as_of) > as_of:
        return False
    changed = (alert.churn_risk, alert.value_at_risk) != (score.churn_risk, score.value_at_risk)
    alert.churn_risk = score.churn_risk
    alert.value_at_risk = score.value_at_risk
    alert.risk_as_of = as_of
    return changed


def _factors(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in factors]


async def _unresolved_alerts(session: AsyncSession, customer_id: str) -> Sequence[Alert]:
    query = select(Alert).where(Alert.customer_id == customer_id, Alert.open_slot.is_not(None)).with_for_update()
    return (await session.execute(query)).scalars().all()


def alert_event(event_cls: type[AlertEvent], alert: Alert, **extra: Any) -> AlertEvent:
    return event_cls(
        alert_id=alert.id,
        customer_id=alert.customer_id,
        reason=alert.reason,
        severity=alert.severity,
        status=alert.status,
        trigger_count=alert.trigger_count,
        churn_risk=alert.churn_risk,
        value_at_risk=alert.value_at_risk,
        owner=alert.owner,
        factors=[Factor.model_validate(f) for f in alert.factors],
        event_ids=list(alert.event_ids),
        at=utc_now(),
        **extra,
    )


# ---- reading -------------------------------------------------------------------------------------


async def get_alert(*, session: AsyncSession, alert_id: str, for_update: bool = False) -> Alert:
    query = select(Alert).where(Alert.id == alert_id)
    if for_update:
        query = query.with_for_update()
    alert = (await session.execute(query)).scalar_one_or_none()
    if alert is None:
        raise Problem(
            404,
            "Alert not found",
            f"No alert with id {alert_id}",
            code="not_found",
            errors=[field_error("id", "unknown alert")],
        )
    return alert


async def list_alerts(
    *,
    session: AsyncSession,
    customer_id: str | None = None,
    statuses: Sequence[AlertStatus] = (),
    reasons: Sequence[str] = (),
    severities: Sequence[Severity] = (),
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Alert], int]:
    """One page of matching alerts, biggest value at risk first (unknown last), then most recent; and the total."""
    conditions = []
    if customer_id is not None:
        conditions.append(Alert.customer_id == customer_id)
    if statuses:
        conditions.append(Alert.status.in_([str(s) for s in statuses]))
    if reasons:
        conditions.append(Alert.reason.in_(list(reasons)))
    if severities:
        conditions.append(Alert.severity.in_([str(s) for s in severities]))
    total = (await session.execute(select(func.count()).select_from(Alert).where(*conditions))).scalar_one()
    query = (
        select(Alert)
        .where(*conditions)
        # id last: a total order, so pages neither repeat nor skip rows
        .order_by(Alert.value_at_risk.desc().nulls_last(), Alert.last_triggered_at.desc(), Alert.id)
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return (await session.execute(query)).scalars().all(), total


# ---- transitions ---------------------------------------------------------------------------------


async def acknowledge_alert(*, session: AsyncSession, alert_id: str, owner: str | None = None) -> Alert:
    """Someone is on it. Repeating the call changes nothing; naming another owner reassigns the alert."""
    alert = await get_alert(session=session, alert_id=alert_id, for_update=True)
    if alert.status == AlertStatus.acknowledged:
        if owner is None or owner == alert.owner:
            return alert
    elif alert.status not in ACKNOWLEDGE_FROM:
        raise _conflict(alert, "acknowledged", ACKNOWLEDGE_FROM)
    now = utc_now()
    alert.status = AlertStatus.acknowledged
    alert.acknowledged_at = alert.acknowledged_at or now
    alert.snoozed_until = None
    if owner is not None:
        alert.owner = owner
    alert.updated_at = now
    await session.flush()
    await enqueue(session, alert_event(AlertUpdated, alert))
    return alert


async def resolve_alert(*, session: AsyncSession, alert_id: str, outcome: Outcome, note: str | None = None) -> Alert:
    """Close the alert with its outcome; this frees the (customer, reason) slot for a new alert."""
    alert = await get_alert(session=session, alert_id=alert_id, for_update=True)
    if alert.status not in RESOLVE_FROM:
        raise _conflict(alert, "resolved", RESOLVE_FROM)
    now = utc_now()
    alert.status = AlertStatus.resolved
    alert.outcome = outcome
    alert.outcome_note = note
    alert.resolved_at = now
    alert.snoozed_until = None
    alert.open_slot = None
    alert.updated_at = now
    await session.flush()
    # The note stays here: free text may name people, and the Kafka log cannot be erased.
    await enqueue(session, alert_event(AlertResolved, alert, outcome=outcome))
    return alert


def _conflict(alert: Alert, target: str, allowed: frozenset[AlertStatus]) -> Problem:
    allowed_text = ", ".join(sorted(allowed))
    return Problem(
        409,
        "Invalid alert transition",
        f"Alert {alert.id} is {alert.status}; only {allowed_text} alerts can be {target}.",
        code="invalid_transition",
        errors=[field_error("status", f"is {alert.status}")],
        alert_id=alert.id,
        current_status=str(alert.status),
    )
