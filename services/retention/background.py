"""Housekeeping loop of the consume role: wake snoozed alerts, close recovered ones as saved, prune logs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI

from servicekit.db import Database
from services.retention import service
from services.retention.settings import RetentionSettings

log = logging.getLogger("retention.housekeeping")


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
        )


async def run_housekeeping(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings
    while True:
        try:
            await housekeeping_round(database, settings)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping round failed")
        await asyncio.sleep(settings.housekeeping_interval_s)
