"""Playbooks: what the account manager does for each alert reason, and the control-group draw.

Pure: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Action(StrEnum):
    call_owner = "call_owner"
    service_recovery = "service_recovery"
    loyalty_offer = "loyalty_offer"
    executive_outreach = "executive_outreach"
    satisfaction_survey = "satisfaction_survey"
    win_back_offer = "win_back_offer"
    follow_up_visit = "follow_up_visit"  # a regular return visit at a key customer's premises


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    due_in_hours: float
    only_tiers: frozenset[str] = frozenset()  # empty: every customer


@dataclass(frozen=True, slots=True)
class PlannedTask:
    action: Action
    due_at: datetime


def plan_tasks(steps: Sequence[Step], *, tier: str | None, now: datetime) -> list[PlannedTask]:
    """The tasks a playbook asks for, for a customer of this tier; a step limited to tiers skips others."""
    return [
        PlannedTask(action=step.action, due_at=now + timedelta(hours=step.due_in_hours))
        for step in steps
        if not step.only_tiers or tier in step.only_tiers
    ]


def draw(alert_id: str) -> float:
    """A uniform number in [0, 1) fixed by the alert id: the same alert always lands in the same group."""
    digest = hashlib.sha256(alert_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_control_group(alert_id: str, control_share: float) -> bool:
    """Held back (no tasks) so the playbook's effect can be measured against doing nothing."""
    return control_share > 0 and draw(alert_id) < control_share
