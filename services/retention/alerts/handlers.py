"""Where the signals the rules watch arrive (scores, complaints, surveys): alerts. Never commits (the consumer does)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.inbox import batch_customer_ids
from servicekit.outbox.writer import write_at_commit
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.alerts import service as alerts
from services.retention.metrics import HISTORY_SIGNALS
from services.retention.reports import facts as read_model
from services.retention.settings import get_settings
from services.retention.signals import history
from services.retention.signals import service as signals


async def on_signal(
    uow: UnitOfWork, event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered]
) -> None:
    # Duplicate-safe: the signal log keys on the event id, alerts remember the ids applied to them, and
    # an older score than the latest is ignored. History older than the horizon raises no alert.
    horizon = get_settings().alert_history_horizon_days
    live = not history.is_history(event.data, now=datetime.now(UTC), horizon_days=horizon)
    if not live:
        HISTORY_SIGNALS.inc()
    await alerts.handle_event(uow=uow, event=event, raise_alerts=live)
    await read_model.on_signal(uow, event)  # duplicate-safe: keyed on the event id


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Store a consumer batch's signals, and lock and load the rows its events will touch, in a few statements.

    The consumer calls this before applying the batch; the per-event lookups then find the replicas,
    latest scores and unresolved alerts in the unit of work's state instead of a round trip each.
    Sorted ids, so two transactions lock in the same order.
    """
    write_at_commit(uow.session)  # the batch's events go to the outbox in one statement
    ids = sorted(batch_customer_ids(events))
    if ids:
        # Replicas, latest scores, unresolved alerts and consent locked and read, and the catalog checked, in
        # one statement (batch_rows): the signals' preload below finds the catalog checked.
        await batch_rows.lock_and_load(uow, ids)
    await signals.preload(uow, events)
