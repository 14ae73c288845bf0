"""The silent-customer sweep's decisions. Pure: no I/O, no clock.

A customer who goes silent produces no events, yet their risk should rise as recency grows and
P(alive) falls. The sweep (jobs.sweep_silent_customers, consume role only) rescores customers whose
score has not been computed for a while, at the clock, and publishes score.updated only when a score
moved enough to matter. These functions say who is due and what counts as a move.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from contracts.scoring import ScoreValues


class ChangeThresholds(BaseModel):
    """How much a score must move, against the last one published, for the sweep to publish a new one.

    Defaults: one percentage point of churn risk or of P(alive), one point of health, or any change of
    value tier or lifecycle stage. Smaller moves are invisible where people read scores (percent and
    whole points) and, summed over every silent customer every day, would flood crm.scoring.v1 with
    updates nobody acts on; a customer who keeps drifting crosses a threshold within a few days anyway,
    because the comparison is always against the last score published, not the last one computed.
    """

    churn_risk: float = Field(0.01, ge=0)
    health: float = Field(1.0, ge=0)
    p_alive: float = Field(0.01, ge=0)


def meaningful_change(previous: ScoreValues | None, current: ScoreValues, thresholds: ChangeThresholds) -> bool:
    """Whether `current` differs enough from the last published `previous` to publish it."""
    if previous is None:
        return True
    if previous.value_tier != current.value_tier or previous.lifecycle_stage != current.lifecycle_stage:
        return True
    if abs(current.churn_risk - previous.churn_risk) >= thresholds.churn_risk:
        return True
    if abs(current.health - previous.health) >= thresholds.health:
        return True
    if (previous.p_alive is None) != (current.p_alive is None):
        return True
    return (
        previous.p_alive is not None
        and current.p_alive is not None
        and abs(current.p_alive - previous.p_alive) >= thresholds.p_alive
    )


def sweep_as_of(
    *,
    status: str | None,
    last_event_at: datetime | None,
    looked_at: datetime | None,
    clock: datetime,
    min_age: timedelta,
) -> datetime | None:
    """When a silent customer is due for rescoring, the time to score it at; None when not due.

    `looked_at` is the latest time the customer was scored or checked at (its stored score's as_of, or
    the sweep's last look). Due when that is at least `min_age` older than the clock; a customer never
    seen in an interaction has nothing that ages, and a churned customer is already lost, so neither is
    due. The customer is scored at the clock, never before its own latest event.
    """
    if status == "churned" or last_event_at is None:
        return None
    as_of = max(clock, last_event_at)
    if looked_at is not None and as_of - looked_at < min_age:
        return None
    return as_of
