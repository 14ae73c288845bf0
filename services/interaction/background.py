"""Background loops of the consume role: the complaint SLA watcher and the parked-event sweep.

Each pass is one transaction; a failing pass is logged and retried on the next tick, so a database
outage pauses the loops without killing them (servicekit.background).
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.background import every_in_transaction
from servicekit.clock import utc_now
from services.interaction import metrics
from services.interaction.complaints.service import flag_overdue_complaints
from services.interaction.inbound.service import sweep_parked as sweep_parked_events
from services.interaction.settings import InteractionSettings, complaint_sla_hours


async def watch_overdue(app: FastAPI) -> None:
    """Flag complaints past their SLA and emit complaint.overdue once per complaint."""
    settings: InteractionSettings = app.state.settings

    async def work(session: AsyncSession) -> object:
        flagged = await flag_overdue_complaints(session=session, now=utc_now())
        await metrics.refresh(session)  # the flags just set count too (same transaction)
        return flagged

    await every_in_transaction(settings.overdue_check_interval_s, "overdue", app.state.database, work)


async def sweep_parked(app: FastAPI) -> None:
    """Retry parked ERP/SCM events whose customer has become known."""
    settings: InteractionSettings = app.state.settings

    async def work(session: AsyncSession) -> object:
        return await sweep_parked_events(session=session, sla_hours=await complaint_sla_hours(session, settings))

    await every_in_transaction(settings.parked_sweep_interval_s, "parked", app.state.database, work)
