"""What people and the housekeeping loop do to alerts: acknowledge, snooze, wake, resolve, auto-save."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from contracts.retention import AlertResolved, AlertUpdated
from servicekit.clock import utc_now
from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import ACKNOWLEDGE_FROM, RESOLVE_FROM, SNOOZE_FROM, Alert, AlertStatus, Outcome
from services.retention.alerts.service import alert_event, get_alert
from services.retention.outcomes import read_model as metric_totals
from services.retention.publishing import publish


async def acknowledge_alert(*, uow: UnitOfWork, alert_id: str, owner: str | None = None) -> Alert:
    """Someone is on it. Repeating the call changes nothing; naming another owner reassigns the alert."""
    alert = await get_alert(session=uow.session, alert_id=alert_id, for_update=True)
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
    await uow.session.flush()
    await publish(uow, alert_event(AlertUpdated, alert))
    return alert


async def snooze_alert(
    *, uow: UnitOfWork, alert_id: str, until: datetime, reason: str, now: datetime | None = None
) -> Alert:
    """Quiet until `until`: new triggers update it silently; then it is open again (wake_snoozed)."""
    now = now or utc_now()
    until = as_utc(until)
    if until <= now:
        raise Problem(
            422,
            "Invalid snooze",
            "until must be in the future",
            code="validation",
            errors=[field_error("until", "must be in the future")],
        )
    alert = await get_alert(session=uow.session, alert_id=alert_id, for_update=True)
    if alert.status not in SNOOZE_FROM:
        raise _conflict(alert, "snoozed", SNOOZE_FROM)
    alert.status = AlertStatus.snoozed
    alert.snoozed_until = until
    alert.snooze_reason = reason
    alert.updated_at = now
    await uow.session.flush()
    await publish(uow, alert_event(AlertUpdated, alert))
    return alert


async def wake_snoozed(*, uow: UnitOfWork, now: datetime | None = None) -> list[Alert]:
    """Snoozed alerts whose date has come are open again (and announced once)."""
    now = now or utc_now()
    due = (
        (
            await uow.session.execute(
                select(Alert)
                .where(Alert.status == AlertStatus.snoozed, Alert.snoozed_until <= now)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for alert in due:
        alert.status = AlertStatus.open
        alert.snoozed_until = None
        alert.updated_at = now
    await uow.session.flush()
    for alert in due:
        await publish(uow, alert_event(AlertUpdated, alert))
    return list(due)


async def resolve_alert(
    *, uow: UnitOfWork, alert_id: str, outcome: Outcome, note: str | None = None, alert: Alert | None = None
) -> Alert:
    """Close the alert with its outcome; this frees the (customer, reason) slot for a new alert."""
    alert = alert or await get_alert(session=uow.session, alert_id=alert_id, for_update=True)
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
    await uow.session.flush()
    metric_totals.touch(uow.session, alert.customer_id)
    # The note stays here: free text may name people, and the Kafka log cannot be erased.
    await publish(uow, alert_event(AlertResolved, alert, outcome=outcome))
    return alert


async def auto_save(*, uow: UnitOfWork, after: timedelta, now: datetime | None = None) -> list[Alert]:
    """Risk alerts whose risk has stayed below their threshold for `after` close as saved."""
    now = now or utc_now()
    due = (
        (
            await uow.session.execute(
                select(Alert)
                .where(Alert.open_slot.is_not(None), Alert.risk_below_since <= now - after)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for alert in due:
        days = after.total_seconds() / 86400
        note = f"Churn risk stayed below {alert.recover_below:.0%} for {days:g} days"
        await resolve_alert(uow=uow, alert_id=alert.id, outcome=Outcome.saved, note=note, alert=alert)
    return list(due)


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
