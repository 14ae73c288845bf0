"""History does not flood the queue. Pure: no I/O, no clock of its own.

An imported or replayed history streams through the consumer like live events, but a lapse in 1998 is
no reason to call a customer today. A signal whose business time (the score's as_of, the complaint's
opening, the survey's answer) lies further back than the horizon still updates what retention keeps
(the customer's latest score, the signal log that risk_jump and previews read, the risk of alerts
already open) but raises no alert and reopens none.

A rescoring that is no change of the customer is judged by the customer's own situation, not by the
clock it was computed at (rules/causes.py). A change of lens (a model activated, a value refit, an
evaluation of the rules) speaks for a customer only when the customer's own latest event is within the
horizon; the sweep's lapse only when it happened within the horizon (since scoring last looked). A
customer whose situation lies further back is left to win-back (campaigns): counted, never alerted.
The same judgement serves POST /alerts/evaluate, which is itself a change of lens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.types import as_utc
from services.retention.rules.causes import is_lapse, is_lens_change

Signal = ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered


class Standing(StrEnum):
    live = "live"  # the rules judge it
    history = "history"  # older than the horizon: recorded, no alert
    win_back = "win_back"  # a rescoring of a customer whose own situation is older than the horizon


def business_time(data: Signal) -> datetime:
    """When what the signal reports happened (not when it was computed or delivered)."""
    if isinstance(data, ScoreUpdated):
        return as_utc(data.as_of or data.computed_at)
    if isinstance(data, ComplaintOpened):
        return as_utc(data.opened_at)
    if isinstance(data, ComplaintOverdue):
        return as_utc(data.due_at)
    return as_utc(data.answered_at)


def situation_time(data: Signal) -> datetime:
    """The earliest time at which what the signal says about the customer can have come about.

    A live signal: its business time. A change of lens: the customer's own latest event (the lens
    changed, the customer did not). A lapse: the sweep's previous look at the customer (the silence
    crossed whatever it crossed since then). Unknown (an earlier producer): the business time.
    """
    at = business_time(data)
    if not isinstance(data, ScoreUpdated):
        return at
    if is_lens_change(data):
        return as_utc(data.last_event_at) if data.last_event_at is not None else at
    if is_lapse(data):
        since = data.previous_as_of or data.last_event_at
        return as_utc(since) if since is not None else at
    return at


def beyond(at: datetime, *, now: datetime, horizon_days: float) -> bool:
    """Whether `at` lies further back than the horizon (0 or less: no horizon, nothing does)."""
    return horizon_days > 0 and as_utc(at) < as_utc(now) - timedelta(days=horizon_days)


def standing(data: Signal, *, now: datetime, horizon_days: float) -> Standing:
    """Whether the rules judge the signal (0 or less: no horizon, everything is live)."""
    if beyond(business_time(data), now=now, horizon_days=horizon_days):
        return Standing.history
    if beyond(situation_time(data), now=now, horizon_days=horizon_days):
        return Standing.win_back
    return Standing.live


def is_history(data: Signal, *, now: datetime, horizon_days: float) -> bool:
    """True when the signal is older than the horizon (0 or less: no horizon, everything is live)."""
    return standing(data, now=now, horizon_days=horizon_days) == Standing.history
