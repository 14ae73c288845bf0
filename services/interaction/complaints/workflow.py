"""The complaint workflow as CRM practice prescribes it. Pure: no clock, no I/O.

Listen and record (open), confirm receipt to the customer (acknowledged), judge whether the complaint
is justified (valid or rejected), solve it (resolved, with the resolution), ask the customer whether
the solution worked (followed_up), and close it. A rejected complaint is closed directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.interaction.complaints.sla import ComplaintStatus

S = ComplaintStatus


class ComplaintCategory(StrEnum):
    product_quality = "product_quality"
    service = "service"
    delivery = "delivery"
    billing = "billing"
    staff = "staff"
    other = "other"


TRANSITIONS: Mapping[ComplaintStatus, frozenset[ComplaintStatus]] = {
    S.open: frozenset({S.acknowledged}),
    S.acknowledged: frozenset({S.valid, S.rejected}),
    S.valid: frozenset({S.resolved}),
    S.rejected: frozenset({S.closed}),
    S.resolved: frozenset({S.followed_up}),
    S.followed_up: frozenset({S.closed}),
    S.closed: frozenset(),
}

RESOLUTION_MAX = 5000


@dataclass(frozen=True, slots=True)
class TransitionRefused(Exception):
    """A step the workflow does not allow; `field` names the request field at fault."""

    reason: str
    field: str = "to"
    status: int = 409  # 409: not allowed from the current state; 422: the request itself is incomplete

    def __str__(self) -> str:
        return self.reason


def allowed_next(current: ComplaintStatus | str) -> frozenset[ComplaintStatus]:
    return TRANSITIONS[ComplaintStatus(current)]


def check_transition(current: ComplaintStatus | str, to: ComplaintStatus | str, resolution: str | None) -> None:
    """Raise TransitionRefused unless `current -> to` is a step of the workflow with what it needs."""
    current, to = ComplaintStatus(current), ComplaintStatus(to)
    nexts = TRANSITIONS[current]
    if to not in nexts:
        if not nexts:
            reason = f"the complaint is {current.value}; no further step is possible"
        else:
            options = ", ".join(sorted(s.value for s in nexts))
            reason = f"a complaint that is {current.value} can only move to: {options}"
        raise TransitionRefused(reason)
    if to == S.resolved and not (resolution and resolution.strip()):
        # CRM practice: a complaint is resolved by a concrete solution, recorded with it.
        raise TransitionRefused("resolving a complaint requires the resolution", field="resolution", status=422)


def category_of(value: str | None) -> ComplaintCategory:
    """A complaint's category; none given means other. Raises ValueError for an unknown one."""
    if value is None:
        return ComplaintCategory.other
    return ComplaintCategory(value.strip().lower())
