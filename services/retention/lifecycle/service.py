"""The customer's lifecycle as retention follows it: creation and updates (the replica, and the account
manager's work moving with the owner), status changes (churn closes alerts and starts win-back), erasure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import col

from contracts.customer import CustomerCreated, CustomerErased, CustomerStatusChanged, CustomerUpdated, tier_attribute
from contracts.erasure import ErasureConfirmed
from contracts.retention import AlertUpdated
from servicekit.clock import utc_now
from servicekit.events.envelope import Received
from servicekit.outbox import enqueue
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import resolve_alert
from services.retention.alerts.models import Alert, AlertChange, Outcome
from services.retention.alerts.service import alert_event, unresolved_alerts
from services.retention.catalog.service import catalog
from services.retention.outcomes import read_model as metric_totals
from services.retention.publishing import publish
from services.retention.replica import service as replicas
from services.retention.replica.models import StatusChange
from services.retention.rules.core import Reason
from services.retention.signals.models import Signal
from services.retention.tasks.models import Task, TaskStatus
from services.retention.tasks.service import create_tasks, stored_tasks
from services.retention.touches import service as touches
from services.retention.webhooks.service import erase_deliveries


async def on_customer_created(*, uow: UnitOfWork, data: CustomerCreated) -> None:
    session = uow.session
    replica = await replicas.replica(uow, data.customer_id)
    if replica.version >= 1 or replica.erased_at is not None:
        return  # an update (or the erasure) overtook the creation: it is newer
    replica.owner = data.owner
    replica.segment = data.segment
    replica.status = replica.status or data.status
    replica.tier = tier_attribute(data.attributes)
    replica.version = 1
    replica.first_seen = as_utc(data.created_at)
    replica.updated_at = utc_now()
    # Not flushed here: a batch's new replicas go in with its next statement (autoflush), all at once,
    # where a flush per event inserted each alone (an import's batch is hundreds of new customers).
    metric_totals.touch(session, data.customer_id)
    # A complaint can overtake the creation (other topic): hand its unowned work to the owner now.
    if data.owner is not None:
        await _reassign(uow, data.customer_id, None, data.owner)
    # An imported customer who had already churned counts in the churn history.
    churned_on = getattr(data, "churned_at", None)
    if data.status == "churned" and churned_on is not None:
        session.add(
            StatusChange(
                event_id=f"{data.customer_id}:imported-churn",
                customer_id=data.customer_id,
                status="churned",
                reason=getattr(data, "churn_reason", None),
                at=replicas.end_of(churned_on),
            )
        )
        await session.flush()


async def on_customer_updated(*, uow: UnitOfWork, data: CustomerUpdated) -> None:
    replica = await replicas.replica(uow, data.customer_id)
    if replica.erased_at is not None or (replica.version and data.version <= replica.version):
        return
    changed = set(data.changed) or {"owner", "segment", "attributes"}
    previous_owner = replica.owner
    previous_groups = (replica.segment, replica.tier)
    if "owner" in changed:
        replica.owner = data.owner
    if "segment" in changed:
        replica.segment = data.segment
    if "attributes" in changed:
        replica.tier = tier_attribute(data.attributes)
    replica.version = data.version
    replica.updated_at = utc_now()
    await uow.session.flush()
    if (replica.segment, replica.tier) != previous_groups:
        metric_totals.touch(uow.session, data.customer_id)
    if replica.owner != previous_owner:
        await _reassign(uow, data.customer_id, previous_owner, replica.owner)


async def _reassign(uow: UnitOfWork, customer_id: str, previous: str | None, owner: str | None) -> None:
    """Personal continuity: the new account manager takes over the work the previous one had.

    Closed work moves too (without events: nothing about it changes but who may see it), since the
    gateway narrows an agent's alert and task lists by this owner: left behind, a previous owner would
    keep listing a customer's resolved alerts and completed tasks after the customer moved away.
    """
    session = uow.session
    tasks = await stored_tasks(session, Task.customer_id == customer_id, _same(Task.owner, previous))
    for task in tasks:
        task.owner = owner
    await session.execute(
        update(Alert)
        .where(Alert.customer_id == customer_id, Alert.open_slot.is_(None), _same(Alert.owner, previous))
        .values(owner=owner)
        .execution_options(synchronize_session="fetch")
    )
    for alert in await unresolved_alerts(uow, customer_id):
        if alert.owner == previous:
            alert.owner = owner
            alert.updated_at = utc_now()
            await session.flush()
            await publish(uow, alert_event(AlertUpdated, alert))
    await session.flush()


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


async def on_status_changed(*, uow: UnitOfWork, event: Received[CustomerStatusChanged]) -> None:
    """Record the change (metrics); a churn closes the customer's open alerts as churned and starts win-back."""
    session = uow.session
    data = event.data
    known = (await session.execute(select(StatusChange.id).where(StatusChange.event_id == event.id))).first()
    if known:
        return
    at = replicas.churn_time(data)
    latest_at = (
        await session.execute(select(func.max(StatusChange.at)).where(StatusChange.customer_id == data.customer_id))
    ).scalar_one_or_none()
    session.add(
        StatusChange(
            event_id=event.id,
            customer_id=data.customer_id,
            previous_status=data.previous_status,
            status=data.status,
            reason=data.reason,
            at=at,
        )
    )
    replica = await replicas.replica(uow, data.customer_id)
    await session.flush()
    metric_totals.touch(session, data.customer_id)
    if latest_at is not None and as_utc(latest_at) > at:
        return  # an older change arriving late: history for the metrics, but not the current status
    replica.status = data.status
    replica.updated_at = utc_now()
    if data.status != "churned":
        await session.flush()
        return
    for alert in await unresolved_alerts(uow, data.customer_id):
        await resolve_alert(uow=uow, alert_id=alert.id, outcome=Outcome.churned, alert=alert)
        for task in await stored_tasks(session, Task.alert_id == alert.id, Task.status == TaskStatus.open):
            task.status = TaskStatus.cancelled
    playbook = (await catalog(uow)).playbooks.get(Reason.churned)
    if playbook is not None:
        latest = await replicas.known_score(uow, data.customer_id)
        tier = replica.tier or (latest.value_tier if latest else None)
        events = await create_tasks(
            uow=uow, playbook=playbook, customer_id=data.customer_id, alert_id=None, tier=tier, owner=replica.owner
        )
        if events:
            await publish(uow, *events)
    await session.flush()


async def erase_customer(*, uow: UnitOfWork, data: CustomerErased) -> bool:
    """Remove the free text held about the customer, keep anonymous aggregates, confirm once.

    Kept: alerts, tasks and outcomes with their numbers and codes (the metrics need them); they name
    the customer only by the pseudonymous id. Removed: outcome notes, snooze reasons, task notes, the
    replica's tier attribute. Returns False when the customer was already erased (no second receipt).
    """
    session = uow.session
    replica = await replicas.replica(uow, data.customer_id)
    if replica.erased_at is not None:
        return False
    replica.erased_at = as_utc(data.erased_at)
    replica.tier = None
    replica.updated_at = utc_now()
    metric_totals.touch(session, data.customer_id)  # the tier the metrics group the customer by is gone
    alerts = (await session.execute(select(Alert).where(Alert.customer_id == data.customer_id))).scalars().all()
    for alert in alerts:
        alert.outcome_note = None
        alert.snooze_reason = None
    tasks = await stored_tasks(session, Task.customer_id == data.customer_id)
    for task in tasks:
        task.note = None
    # Factor labels quote feature values (attributes among them): only codes and numbers stay.
    alert_ids = [a.id for a in alerts]
    for alert in alerts:
        alert.factors = scrub_factors(alert.factors)
    signals = (await session.execute(select(Signal).where(Signal.customer_id == data.customer_id))).scalars().all()
    for signal in signals:
        signal.data = _scrubbed_event_data(signal.data)
    if alert_ids:
        changes = (
            (await session.execute(select(AlertChange).where(col(AlertChange.alert_id).in_(alert_ids)))).scalars().all()
        )
        for change in changes:
            change.data = _scrubbed_event_data(change.data)
    deliveries = await erase_deliveries(session, data.customer_id)
    await touches.erase(session=session, customer_id=data.customer_id)
    await session.flush()
    summary = (
        f"Removed free-text notes from {len(alerts)} alert(s) and {len(tasks)} task(s), the customer's tier "
        f"attribute, factor labels from alerts, signals and the alert change log, and the payloads of "
        f"{deliveries} webhook delivery(ies), and the consent replica; kept alerts, tasks, touches and outcomes "
        "by pseudonymous id as anonymous aggregates."
    )
    await enqueue(
        session,
        ErasureConfirmed(customer_id=data.customer_id, service="retention", erased_at=utc_now(), summary=summary),
    )
    return True


def scrub_factors(factors: Any) -> list[dict[str, Any]]:
    """Factors without their labels (a label may quote a feature value): the code stands in for it."""
    if not isinstance(factors, list):
        return []
    return [
        {"code": f.get("code"), "label": f.get("code"), "contribution": f.get("contribution")}
        for f in factors
        if isinstance(f, dict)
    ]


def _scrubbed_event_data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    return {**data, "factors": scrub_factors(data["factors"])} if "factors" in data else dict(data)
