"""The retention service's periodic loops: housekeeping (wake snoozed alerts, close recovered ones as saved,
prune logs and refresh the business gauges) and the daily loyalty sweep; the webhook sender and the sequence
engine run their own loops (webhooks/delivery.py, sequences/engine.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.background import every
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.unit_of_work import unit_of_work
from services.retention import metrics
from services.retention.alerts.actions import auto_save, wake_snoozed
from services.retention.alerts.models import AlertChange
from services.retention.outcomes import read_model as metric_totals
from services.retention.reports import loyalty_sweep
from services.retention.settings import RetentionSettings
from services.retention.signals.models import Signal
from services.retention.webhooks.models import DeliveryStatus, WebhookDelivery

# How often a replica checks whether today's loyalty sweep is done (the sweep itself runs once a day).
LOYALTY_SWEEP_CHECK_EVERY_S = 300.0

# The business gauges need not follow every 5 s round: a minute is fresh enough for a dashboard.
METRICS_EVERY_S = 60.0
_metrics_refreshed_at = float("-inf")


async def housekeeping_round(database: Database, settings: RetentionSettings) -> None:
    async with unit_of_work(database) as uow:
        await wake_snoozed(uow=uow)
    async with unit_of_work(database) as uow:
        await auto_save(uow=uow, after=timedelta(days=settings.saved_after_days))
    async with database.transaction() as session:
        await prune(
            session=session,
            signals_for=timedelta(days=settings.signal_retention_days),
            changes_for=timedelta(hours=settings.alert_changes_retention_hours),
            deliveries_for=timedelta(days=settings.webhook_delivery_retention_days),
        )
    await rebuild_metric_totals(database, timedelta(days=settings.warning_lookback_days))
    global _metrics_refreshed_at
    if time.monotonic() - _metrics_refreshed_at >= METRICS_EVERY_S:
        async with database.sessions() as session:
            await metrics.refresh(session)
        _metrics_refreshed_at = time.monotonic()


async def rebuild_metric_totals(database: Database, lookback: timedelta) -> None:
    """Recall and warning time follow a changed look-back: the metrics' read model is rebuilt a chunk of
    customers per transaction, so event transactions commit between chunks rather than wait for all of it
    (the metrics answer from the facts until the last chunk). A rebuild cut short resumes at its cursor."""
    async with database.transaction() as session:
        await session.run_sync(lambda s: metric_totals.start_rebuild(s.connection(), lookback))
    going = True
    while going:
        async with database.transaction() as session:
            going = await session.run_sync(lambda s: metric_totals.rebuild_step(s.connection()))


async def run_housekeeping(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings
    await every(
        settings.housekeeping_interval_s, "retention.housekeeping", lambda: housekeeping_round(database, settings)
    )


async def loyalty_sweep_round(database: Database, settings: RetentionSettings) -> int | None:
    """Type every customer as of the start of today unless a sweep (this replica's or another's) did."""
    day = utc_now().date()
    async with database.sessions() as session:
        latest = await loyalty_sweep.latest_sweep(session)
    if latest is not None and latest[0].date() >= day:
        return None
    async with database.transaction() as session:
        return await loyalty_sweep.sweep(session, day=day, thresholds=settings.loyalty_thresholds())


async def run_loyalty_sweep(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings
    await every(LOYALTY_SWEEP_CHECK_EVERY_S, "retention.loyalty_sweep", lambda: loyalty_sweep_round(database, settings))


async def prune(
    *,
    session: AsyncSession,
    signals_for: timedelta,
    changes_for: timedelta,
    deliveries_for: timedelta | None = None,
    now: datetime | None = None,
) -> None:
    """Drop signals, alert changes and finished webhook deliveries past their retention (they only serve
    preview, risk_jump, replay and a subscriber's debugging)."""
    now = now or utc_now()
    await session.execute(delete(Signal).where(Signal.at < now - signals_for))
    await session.execute(delete(AlertChange).where(AlertChange.at < now - changes_for))
    if deliveries_for is not None:
        # The delivery log holds copies of events (payloads): kept only as long as it helps to debug
        # a subscriber. A pending delivery stays until it is sent or fails.
        await session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.status != DeliveryStatus.pending,  # type: ignore[arg-type]
                WebhookDelivery.created_at < now - deliveries_for,  # type: ignore[arg-type]
            )
        )
