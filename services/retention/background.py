"""Housekeeping loop of the consume role: wake snoozed alerts, close recovered ones as saved, prune logs."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi import FastAPI

from servicekit.background import every
from servicekit.db import Database
from services.retention import metrics, service
from services.retention.settings import RetentionSettings

# The business gauges need not follow every 5 s round: a minute is fresh enough for a dashboard.
METRICS_EVERY_S = 60.0
_metrics_refreshed_at = float("-inf")


async def housekeeping_round(database: Database, settings: RetentionSettings) -> None:
    async with database.transaction() as session:
        await service.wake_snoozed(session=session)
    async with database.transaction() as session:
        await service.auto_save(session=session, after=timedelta(days=settings.saved_after_days))
    async with database.transaction() as session:
        await service.prune(
            session=session,
            signals_for=timedelta(days=settings.signal_retention_days),
            changes_for=timedelta(hours=settings.alert_changes_retention_hours),
            deliveries_for=timedelta(days=settings.webhook_delivery_retention_days),
        )
    global _metrics_refreshed_at
    if time.monotonic() - _metrics_refreshed_at >= METRICS_EVERY_S:
        async with database.sessions() as session:
            await metrics.refresh(session)
        _metrics_refreshed_at = time.monotonic()


async def run_housekeeping(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings
    await every(
        settings.housekeeping_interval_s, "retention.housekeeping", lambda: housekeeping_round(database, settings)
    )
