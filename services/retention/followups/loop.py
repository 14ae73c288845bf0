"""The follow-up loop of the consume role: scheduled follow-ups per tier, then those triggered by events."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from servicekit.background import every
from servicekit.db import Database
from services.retention.followups import service, triggers
from services.retention.settings import RetentionSettings

log = logging.getLogger("retention.followups")


async def run_followups(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings

    async def one_round() -> None:
        scheduled = await service.run_due(database, batch_size=settings.sequence_batch_size)
        after_events = await triggers.run_due(database, batch_size=settings.sequence_batch_size)
        if scheduled or after_events:
            log.info("follow-ups ran", extra={"customers": scheduled, "after_events": after_events})

    await every(settings.followup_interval_s, "retention.followups", one_round)
