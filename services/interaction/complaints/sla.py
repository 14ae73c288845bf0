"""Complaint SLA arithmetic. Pure: no clock, no I/O; callers pass `now`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.common import Severity
from servicekit.types import as_utc


class ComplaintStatus(StrEnum):
    """The complaint workflow: listen and record, judge validity, solve, follow up."""

    open = "open"
    acknowledged = "acknowledged"
    valid = "valid"
    rejected = "rejected"
    resolved = "resolved"
    followed_up = "followed_up"
    closed = "closed"


# The SLA measures time to an answer: it runs while the complaint waits for a verdict or a solution,
# and stops once the complaint is rejected or resolved.
SLA_RUNNING = frozenset({ComplaintStatus.open, ComplaintStatus.acknowledged, ComplaintStatus.valid})
SLA_STOPPED = frozenset(set(ComplaintStatus) - SLA_RUNNING)


def sla_hours_for(severity: Severity | str, sla_hours: Mapping[str, float]) -> float:
    try:
        return float(sla_hours[Severity(severity).value])
    except (KeyError, ValueError):
        raise ValueError(f"no complaint SLA for severity {severity!r}") from None


def due_at(opened_at: datetime, severity: Severity | str, sla_hours: Mapping[str, float]) -> datetime:
    """When a complaint opened at `opened_at` must be resolved (UTC, calendar hours)."""
    return as_utc(opened_at) + timedelta(hours=sla_hours_for(severity, sla_hours))


def is_overdue(due: datetime | None, status: ComplaintStatus | str | None, now: datetime) -> bool:
    """True once `now` is past the due time of a complaint whose SLA is still running."""
    if due is None or status is None or ComplaintStatus(status) in SLA_STOPPED:
        return False
    return as_utc(now) > as_utc(due)


def needs_overdue_flag(
    due: datetime | None, status: ComplaintStatus | str | None, overdue_at: datetime | None, now: datetime
) -> bool:
    """Whether the overdue watcher must flag this complaint now: overdue and not flagged before.

    The watcher's SQL query selects exactly these rows; this is the rule it implements.
    """
    return overdue_at is None and is_overdue(due, status, now)
