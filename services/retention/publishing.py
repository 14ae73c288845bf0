"""Publishing a change: the outbox, webhook deliveries and the SSE change log, all in the caller's transaction."""

from __future__ import annotations

from contracts.retention import AlertEvent
from servicekit.clock import utc_now
from servicekit.db import hold_until_commit, insert_rows
from servicekit.events.envelope import EventData
from servicekit.outbox import enqueue
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import AlertChange
from services.retention.catalog.service import catalog
from services.retention.webhooks.models import WebhookDelivery

_ALERT_CHANGES = "retention.alert_changes"


async def publish(uow: UnitOfWork, *events: EventData) -> None:
    """Enqueue events for Kafka, queue a delivery per subscribed webhook, and log alert changes for SSE.

    Everything is written in the caller's transaction, so a change is never announced without being
    stored, nor stored without being announced.
    """
    session = uow.session
    envelopes = await enqueue(session, *events)
    subscribers = (await catalog(uow)).subscribers
    changes = []
    for data, envelope in zip(events, envelopes, strict=True):
        hooks = [hook for hook in subscribers if hook.wants(envelope.type)]
        if hooks:  # the body is serialised only for an event someone subscribed to
            body = envelope.to_json().decode()
            for hook in hooks:
                session.add(
                    WebhookDelivery(webhook_id=hook.id, event_id=envelope.id, event_type=envelope.type, payload=body)
                )
        if isinstance(data, AlertEvent):
            # The envelope's data is the event's JSON form already (enqueue dumped it once for the outbox).
            changes.append(
                {"alert_id": data.alert_id, "event_type": envelope.type, "at": utc_now(), "data": envelope.data}
            )
    if changes:
        # An append-only log nothing reads back before commit: plain rows, one statement per transaction.
        hold_until_commit(session, _ALERT_CHANGES, changes, insert_rows(AlertChange.__table__))  # type: ignore[attr-defined]
