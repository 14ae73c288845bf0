"""History does not flood the queue. Pure: no I/O, no clock of its own.

An imported or replayed history streams through the consumer like live events, but a lapse in 1998 is
no reason to call a customer today. A signal whose business time (the score's as_of, the complaint's
opening, the survey's answer) lies further back than the horizon still updates what retention keeps
(the customer's latest score, the signal log that risk_jump and previews read, the risk of alerts
already open) but raises no alert and reopens none. After a backfill, POST /alerts/evaluate judges each
customer once on its current state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.types import as_utc

Signal = ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered


def business_time(data: Signal) -> datetime:
    """When what the signal reports happened (not when it was computed or delivered)."""
    if isinstance(data, ScoreUpdated):
        return as_utc(data.as_of or data.computed_at)
    if isinstance(data, ComplaintOpened):
        return as_utc(data.opened_at)
    if isinstance(data, ComplaintOverdue):
        return as_utc(data.due_at)
    return as_utc(data.answered_at)


def is_history(data: Signal, *, now: datetime, horizon_days: float) -> bool:
    """True when the signal is older than the horizon (0 or less: no horizon, everything is live)."""
    if horizon_days <= 0:
        return False
    return business_time(data) < as_utc(now) - timedelta(days=horizon_days)
