"""Alerts from consumed signals: evaluate the stored rules on each signal, raise or update alerts.

A consumer batch locks each customer's unresolved alerts once (preload) into `UnresolvedAlerts`, this
transaction's typed state; every later event of the batch finds them there. Changes are written in the
caller's transaction and announced through publishing.py; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts.common import Severity
from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.retention import AlertEvent, AlertRaised, AlertUpdated
from contracts.scoring import Factor, ScoreUpdated
from servicekit.clock import utc_now
from servicekit.db import hold_until_commit, holds, take_held, update_at_commit
from servicekit.events.envelope import EventData, Received
from servicekit.problems import not_found
from servicekit.sql import assign, new_row
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import EVENT_IDS_KEPT, Alert, AlertStatus, open_slot
from services.retention.catalog.service import Catalog, catalog
from services.retention.db import page
from services.retention.outcomes import read_model as metric_totals
from services.retention.playbooks.core import in_control_group
from services.retention.publishing import publish
from services.retention.replica import service as replica
from services.retention.replica.models import CustomerScore
from services.retention.rules import core as rules
from services.retention.rules.core import Context, RuleKind, Trigger, worse
from services.retention.signals import service as signals
from services.retention.tasks.service import create_tasks


@dataclass
class UnresolvedAlerts:
    """Each customer's unresolved alerts, locked and read once per transaction.

    A list is kept current by apply_trigger (the only place alerts are created) and filtered on the way
    out (resolving clears open_slot), so later events of the batch need no further round trip.
    """

    by_customer: dict[str, list[Alert]] = field(default_factory=dict)


# Alerts raised in this transaction and not yet in the session, added just before commit, all at once.
# Added at once, each would be inserted by the next flush, and the read model and the touches flush after
# every event: one INSERT per alert. Added at commit, a batch's alerts go in one statement. Until then they
# live in UnresolvedAlerts, where every lookup of this module finds them; code that reads or writes the
# alerts table with SQL of its own calls store_new_alerts first.
_NEW_ALERTS = "retention.new_alerts"


def _add_to_session(session: Session, rows: list[dict[str, Any]]) -> None:
    session.add_all([row["alert"] for row in rows])


def store_new_alerts(session: AsyncSession) -> None:
    """Put this transaction's new alerts in the session now (the next flush inserts them)."""
    if holds(session, _NEW_ALERTS):
        _add_to_session(session.sync_session, take_held(session.sync_session, _NEW_ALERTS))


async def unresolved_alerts(uow: UnitOfWork, customer_id: str) -> list[Alert]:
    """The customer's unresolved alerts, locked; read once per transaction."""
    known = uow.state(UnresolvedAlerts).by_customer
    alerts = known.get(customer_id)
    if alerts is None:
        store_new_alerts(uow.session)  # an earlier unit of work's new alerts in this transaction
        query = select(Alert).where(Alert.customer_id == customer_id, Alert.open_slot.is_not(None)).with_for_update()
        alerts = known[customer_id] = list((await uow.session.execute(query)).scalars().all())
    return [a for a in alerts if a.open_slot is not None]


async def handle_event(
    *,
    uow: UnitOfWork,
    event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered],
    raise_alerts: bool = True,
) -> list[Alert]:
    """Record the event, evaluate the stored rules on it, raise or update alerts; returns the alerts it changed.

    raise_alerts=False (history older than the horizon, or a rescoring of a customer whose own situation lies
    beyond it: signals/history.py): recorded, no rule evaluated."""
    data = event.data
    if not await signals.record_signal(uow, event):
        return []  # the same event under another offset: already applied
    if isinstance(data, ScoreUpdated) and not await _record_score(uow, data):
        return []  # an older score than one already seen: it must neither raise nor refresh anything
    if not raise_alerts:
        return []
    current = await catalog(uow)
    if not current.rules:
        return []
    context = await _context(uow, data, current)
    changed = []
    for trigger in rules.evaluate(data, current.rules, context):
        alert = await apply_trigger(
            uow=uow, customer_id=data.customer_id, trigger=trigger, event_id=event.id, current=current
        )
        if alert is not None:
            changed.append(alert)
    return changed


async def _record_score(uow: UnitOfWork, score: ScoreUpdated) -> bool:
    """Keep the customer's latest score and refresh its unresolved alerts (silently) with the new risk.

    Returns False if the score is older than the one already recorded (out of order), and ignores it.
    """
    latest = await replica.record_score(uow, score)
    if latest is None:
        return False
    computed_at = as_utc(score.computed_at)
    # Written at commit, with the batch's other scores and alert changes: later events of the batch read
    # these rows from the transaction's state.
    for alert in await unresolved_alerts(uow, score.customer_id):
        values = _risk_values(alert, latest)
        # Auto-save clock: starts when the risk falls below the alert's threshold, stops when it rises again.
        if alert.recover_below is not None:
            below = score.current.churn_risk < alert.recover_below
            since = (alert.risk_below_since or computed_at) if below else None
            if since != alert.risk_below_since:
                values["risk_below_since"] = since
        update_at_commit(uow.session, alert, **values)
    return True


async def _context(uow: UnitOfWork, data: EventData, current: Catalog) -> Context:
    customer_id: str = data.customer_id  # type: ignore[attr-defined]
    known = await replica.known_replica(uow, customer_id)
    tier = known.tier if known is not None else None
    if tier is None and not isinstance(data, ScoreUpdated):
        latest = await replica.known_score(uow, customer_id)
        tier = latest.value_tier if latest is not None else None
    history: tuple[rules.ScorePoint, ...] = ()
    if isinstance(data, ScoreUpdated) and rules.needs_history(data, current.rules):
        at = as_utc(data.computed_at)
        history = await signals.score_history(uow, customer_id, at - signals.history_window(current.rules), at)
    return Context(tier=tier, history=history)


async def apply_trigger(
    *,
    uow: UnitOfWork,
    customer_id: str,
    trigger: Trigger,
    event_id: str,
    current: Catalog,
) -> Alert | None:
    """Raise the alert for (customer, reason), or count one more trigger on the unresolved one.

    Returns the alert, or None when this event was already applied to it (a redelivery under a new
    offset, on top of the inbox's own de-duplication).
    """
    session = uow.session
    slot = open_slot(customer_id, trigger.reason)
    alert = next((a for a in await unresolved_alerts(uow, customer_id) if a.open_slot == slot), None)
    latest = await replica.known_score(uow, customer_id)
    observed_at = as_utc(trigger.observed_at)
    if alert is None:
        known = await replica.known_replica(uow, customer_id)
        rule = next((r for r in current.rules if r.id == trigger.rule_id), None)
        alert = new_row(
            Alert,
            customer_id=customer_id,
            reason=trigger.reason,
            rule_id=trigger.rule_id or None,
            severity=trigger.severity,
            first_triggered_at=observed_at,
            last_triggered_at=observed_at,
            factors=_factors(trigger.factors),
            event_ids=[event_id],
            open_slot=slot,
            owner=known.owner if known else None,
            segment=known.segment if known else None,
            tier=(known.tier if known else None) or (latest.value_tier if latest else None),
            # Only a risk-threshold alert can be "saved" by the risk staying low: others have no threshold.
            recover_below=rule.params.threshold if rule and rule.kind == RuleKind.churn_risk_above else None,
        )
        assign(alert, **_risk_values(alert, latest))
        playbook = current.playbooks.get(trigger.reason)
        alert.control = playbook is not None and in_control_group(alert.id, playbook.control_share)
        hold_until_commit(session, _NEW_ALERTS, [{"alert": alert}], _add_to_session)  # see _NEW_ALERTS
        metric_totals.touch(session, customer_id)
        # Known to the transaction's list at once, so a second trigger for the same slot finds this alert.
        uow.state(UnresolvedAlerts).by_customer[customer_id].append(alert)
        tasks: list[EventData] = []
        if playbook is not None and not alert.control:
            tasks = await create_tasks(
                uow=uow,
                playbook=playbook,
                customer_id=customer_id,
                alert_id=alert.id,
                tier=alert.tier,
                owner=alert.owner,  # the replica's owner, as it stands in this transaction
            )
        await publish(uow, alert_event(AlertRaised, alert), *tasks)
        return alert

    if event_id in alert.event_ids:
        return None
    values: dict[str, Any] = {
        "trigger_count": alert.trigger_count + 1,
        "severity": worse(alert.severity, trigger.severity),  # an unresolved alert only escalates
        "first_triggered_at": min(as_utc(alert.first_triggered_at), observed_at),
        # A new list, never the stored one changed in place (the raised event may still hold it).
        "event_ids": [*alert.event_ids, event_id][-EVENT_IDS_KEPT:],
        "updated_at": utc_now(),
    }
    if observed_at >= as_utc(alert.last_triggered_at):
        values.update(last_triggered_at=observed_at, factors=_factors(trigger.factors))
    if observed_at < as_utc(alert.first_triggered_at):  # an older signal arriving late moves the alert's start
        metric_totals.touch(session, customer_id)
    update_at_commit(session, alert, **{**values, **_risk_values(alert, latest)})
    # A snoozed alert takes the new evidence without paging anyone again.
    if alert.status != AlertStatus.snoozed:
        await publish(uow, alert_event(AlertUpdated, alert))
    return alert


def _risk_values(alert: Alert, score: CustomerScore | None) -> dict[str, Any]:
    """The latest churn risk and value at risk for the alert, {} if it has them or newer ones already.

    A change of either value also moves the alert's updated_at.
    """
    if score is None:
        return {}
    as_of = as_utc(score.as_of)
    if alert.risk_as_of is not None and as_utc(alert.risk_as_of) > as_of:
        return {}
    values: dict[str, Any] = {"churn_risk": score.churn_risk, "value_at_risk": score.value_at_risk, "risk_as_of": as_of}
    if (alert.churn_risk, alert.value_at_risk) != (score.churn_risk, score.value_at_risk):
        values["updated_at"] = utc_now()
    return values


def _factors(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in factors]


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
        factors=alert.factors,  # type: ignore[arg-type]  # the stored dicts, validated into Factor once here
        event_ids=list(alert.event_ids),
        at=utc_now(),
        rule_id=alert.rule_id,
        tier=alert.tier,
        segment=alert.segment,
        control=alert.control,
        snoozed_until=alert.snoozed_until,
        **extra,
    )


# ---- reading alerts ------------------------------------------------------------------------------


async def get_alert(*, session: AsyncSession, alert_id: str, for_update: bool = False) -> Alert:
    query = select(Alert).where(Alert.id == alert_id)
    if for_update:
        query = query.with_for_update()
    alert = (await session.execute(query)).scalar_one_or_none()
    if alert is None:
        raise not_found("Alert", alert_id, message="unknown alert")
    return alert


async def list_alerts(
    *,
    session: AsyncSession,
    customer_id: str | None = None,
    statuses: Sequence[AlertStatus] = (),
    reasons: Sequence[str] = (),
    severities: Sequence[Severity] = (),
    owners: Sequence[str] = (),
    tiers: Sequence[str] = (),
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Alert], int]:
    """One page of matching alerts by priority (value at risk, unknown last), then most recent; and the total."""
    conditions = []
    if customer_id is not None:
        conditions.append(Alert.customer_id == customer_id)
    for column, values in (
        (Alert.status, statuses),
        (Alert.reason, reasons),
        (Alert.severity, severities),
        (Alert.owner, owners),
        (Alert.tier, tiers),
    ):
        if values:
            conditions.append(column.in_([str(v) for v in values]))
    query = (
        select(Alert)
        .where(*conditions)
        # id last: a total order, so pages neither repeat nor skip rows
        .order_by(Alert.value_at_risk.desc().nulls_last(), Alert.last_triggered_at.desc(), Alert.id)
    )
    return await page(session, query, conditions, Alert, limit, offset)
