"""The rules and playbooks a new retention database starts with (seeded, enabled, by the migration).

Plain rows with fixed ids, so seeding is idempotent and a deleted default stays deleted.
"""

from __future__ import annotations

from typing import Any

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "id": "default-high-churn-risk",
        "name": "Churn risk at or above 60% (high from 80%)",
        "kind": "churn_risk_above",
        "reason": "high_churn_risk",
        "severity": "medium",
        "params": {"threshold": 0.6, "high_at": 0.8},
    },
    {
        "id": "default-risk-jump",
        "name": "Churn risk up 20 points within 7 days",
        "kind": "risk_jump",
        "reason": "risk_jump",
        "severity": "medium",
        "params": {"delta": 0.2, "within_days": 7},
    },
    {
        "id": "default-key-customer-fading",
        "name": "Platinum or gold customer less than 30% likely to still be active",
        "kind": "p_alive_below",
        "reason": "key_customer_fading",
        "severity": "high",
        "params": {"threshold": 0.3, "tiers": ["platinum", "gold"]},
    },
    {
        "id": "default-severe-complaint",
        "name": "High or critical complaint",
        "kind": "severe_complaint",
        "reason": "severe_complaint",
        "severity": "high",
        "params": {"severities": ["high", "critical"]},
    },
    {
        "id": "default-complaint-overdue",
        "name": "Complaint past its due date",
        "kind": "complaint_overdue",
        "reason": "complaint_overdue",
        "severity": "medium",
        "params": {},
    },
    {
        "id": "default-low-satisfaction",
        "name": "Detractor NPS (0-6) or CSAT of 1-2",
        "kind": "low_survey",
        "reason": "low_satisfaction",
        "severity": "medium",
        "params": {"nps_max": 6, "csat_max": 2},
    },
    {
        "id": "default-lifecycle-decline",
        "name": "Relationship moved into decline",
        "kind": "lifecycle_decline",
        "reason": "lifecycle_decline",
        "severity": "medium",
        "params": {},
    },
]


def _step(action: str, hours: float, *tiers: str) -> dict[str, Any]:
    return {"action": action, "due_in_hours": hours, "only_tiers": list(tiers)}


DEFAULT_PLAYBOOKS: list[dict[str, Any]] = [
    {
        "id": "default-severe-complaint",
        "reason": "severe_complaint",
        "name": "Service recovery after a severe complaint",
        "steps": [
            _step("service_recovery", 24),
            _step("call_owner", 24),
            _step("executive_outreach", 48, "platinum"),
        ],
    },
    {
        "id": "default-high-churn-risk",
        "reason": "high_churn_risk",
        "name": "Call, then a loyalty offer",
        "steps": [_step("call_owner", 24), _step("loyalty_offer", 72), _step("executive_outreach", 48, "platinum")],
    },
    {
        "id": "default-risk-jump",
        "reason": "risk_jump",
        "name": "Call when the risk jumps",
        "steps": [_step("call_owner", 24)],
    },
    {
        "id": "default-key-customer-fading",
        "reason": "key_customer_fading",
        "name": "Win a fading key customer back into buying",
        "steps": [_step("call_owner", 24), _step("loyalty_offer", 72), _step("executive_outreach", 48, "platinum")],
    },
    {
        "id": "default-complaint-overdue",
        "reason": "complaint_overdue",
        "name": "Recover an overdue complaint",
        "steps": [_step("service_recovery", 24), _step("call_owner", 24)],
    },
    {
        "id": "default-low-satisfaction",
        "reason": "low_satisfaction",
        "name": "Follow up a poor survey answer",
        "steps": [_step("call_owner", 48), _step("satisfaction_survey", 336)],
    },
    {
        "id": "default-lifecycle-decline",
        "reason": "lifecycle_decline",
        "name": "Re-engage a declining relationship",
        "steps": [_step("call_owner", 72), _step("loyalty_offer", 168)],
    },
    {
        "id": "default-churned",
        "reason": "churned",
        "name": "Win-back offer after churn",
        "steps": [_step("win_back_offer", 168)],
    },
]
