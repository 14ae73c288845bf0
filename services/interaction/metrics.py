"""Business gauge of the interaction service, refreshed by the SLA watcher (services.interaction.background)."""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.metrics import set_gauges
from services.interaction.complaints import sla
from services.interaction.interactions.models import Interaction

# New breaches per hour come from crm_events_published_total{event_type="complaint.overdue"}; this is the stock.
OVERDUE_COMPLAINTS = Gauge(
    "crm_interaction_complaints_overdue", "Complaints past their SLA and still unresolved, by severity", ["severity"]
)


async def refresh(session: AsyncSession) -> None:
    rows = await session.execute(
        select(Interaction.severity, func.count())
        .where(
            col(Interaction.complaint_status).in_([s.value for s in sla.SLA_RUNNING]),
            col(Interaction.overdue_at).is_not(None),
        )
        .group_by(Interaction.severity)
    )
    set_gauges(OVERDUE_COMPLAINTS, {(str(severity or "none"),): n for severity, n in rows})
