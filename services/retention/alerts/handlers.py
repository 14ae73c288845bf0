"""Where the signals the rules watch arrive (scores, complaints, surveys): alerts. Never commits (the consumer does)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts import service as alerts
from services.retention.metrics import HISTORY_SIGNALS, WIN_BACK_SIGNALS
from services.retention.reports import facts as read_model
from services.retention.settings import get_settings
from services.retention.signals import history


async def on_signal(
    uow: UnitOfWork, event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered]
) -> None:
    # Duplicate-safe: the signal log keys on the event id, alerts remember the ids applied to them, and
    # an older score than the latest is ignored. History older than the horizon raises no alert, nor
    # does a rescoring of a customer whose own situation lies beyond it (left to win-back).
    horizon = get_settings().alert_history_horizon_days
    standing = history.standing(event.data, now=datetime.now(UTC), horizon_days=horizon)
    if standing == history.Standing.history:
        HISTORY_SIGNALS.inc()
    elif standing == history.Standing.win_back:
        WIN_BACK_SIGNALS.inc()
    await alerts.handle_event(uow=uow, event=event, raise_alerts=standing == history.Standing.live)
    await read_model.on_signal(uow, event)  # duplicate-safe: keyed on the event id
