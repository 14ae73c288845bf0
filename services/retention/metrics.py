"""Business gauges of the retention service, refreshed by its housekeeping loop (services.retention.background).

Read from the database rather than counted in process, so they survive restarts and agree across
replicas (dashboards take max() over instances).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.metrics import set_gauges
from services.retention.alerts.models import Alert, AlertStatus

OPEN_ALERTS = Gauge("crm_retention_open_alerts", "Unresolved alerts, by tier and status", ["tier", "status"])
RESOLVED_7D = Gauge(
    "crm_retention_alerts_resolved_7d",
    "Alerts resolved in the last 7 days, by outcome (saved: saves per week)",
    ["outcome"],
)
NO_TIER = "none"
# Counted in process (a rate on dashboards): signals older than RETENTION_ALERT_HISTORY_HORIZON_DAYS.
HISTORY_SIGNALS = Counter(
    "crm_retention_history_signals", "Signals older than the alert history horizon: recorded, no alert raised"
)
# Rescorings (a change of lens, the sweep) of customers whose own situation lies beyond that horizon.
WIN_BACK_SIGNALS = Counter(
    "crm_retention_win_back_signals",
    "Rescorings of customers whose own latest event (or lapse) lies beyond the alert history horizon: "
    "recorded, left to win-back, no alert raised",
)


async def refresh(session: AsyncSession, now: datetime | None = None) -> None:
    """Two GROUP BY counts: unresolved alerts (a small, indexed set) and last week's resolutions."""
    now = now or datetime.now(UTC)
    open_rows = await session.execute(
        select(Alert.tier, Alert.status, func.count())
        .where(Alert.status != AlertStatus.resolved)
        .group_by(Alert.tier, Alert.status)
    )
    set_gauges(OPEN_ALERTS, {(tier or NO_TIER, str(status)): n for tier, status, n in open_rows})
    resolved_rows = await session.execute(
        select(Alert.outcome, func.count())
        .where(Alert.status == AlertStatus.resolved, Alert.resolved_at >= now - timedelta(days=7))
        .group_by(Alert.outcome)
    )
    set_gauges(RESOLVED_7D, {(str(outcome or "none"),): n for outcome, n in resolved_rows})
