"""The churn model's inputs: a customer's feature snapshot at a time, and each feature in a manager's words. Pure.

Event features come from the customer's feature state (services.scoring.scores.features); the customer's
own attributes ride along prefixed "attr.", the segment among them. Status is left out: it is the label.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.scoring.scores.features import FeatureState, complaints_between, days_between, spend_between

ATTRIBUTE_PREFIX = "attr."

# Event features: name -> how a retention manager reads the customer's value.
NUMERIC_LABELS: dict[str, str] = {
    "days_since_last_purchase": "No purchase for {v:.0f} days",
    "days_since_last_contact": "Last contact {v:.0f} days ago",
    "tenure_days": "Customer for {v:.0f} days",
    "purchases": "{v:.0f} purchases in total",
    "total_spend": "Total spend {v:,.0f}",
    "spend_last_90d": "Spend {v:,.0f} in the last 90 days",
    "spend_prev_90d": "Spend {v:,.0f} in the 90 days before",
    "avg_days_between_purchases": "Buys every {v:.0f} days on average",
    "returns": "{v:.0f} returns",
    "complaints_30d": "{v:.0f} complaints in the last 30 days",
    "complaints_90d": "{v:.0f} complaints in the last 90 days",
    "open_complaints": "{v:.0f} complaints still open",
    "overdue_complaints": "{v:.0f} complaints past the response deadline",
    "last_nps": "Last NPS {v:.0f}",
    "avg_nps": "Average NPS {v:.1f}",
    "last_csat": "Last CSAT {v:.0f} of 5",
    "avg_csat": "Average CSAT {v:.1f} of 5",
    "sentiment": "Tone of recent contacts {v:+.2f}",
}
EVENT_FEATURES = tuple(NUMERIC_LABELS)


def snapshot(state: FeatureState, as_of: datetime) -> dict[str, Any]:
    """The model's inputs as they stand at `as_of`: event features plus the customer's own attributes
    (segment and every attribute, prefixed "attr."). Status is left out: it is the label."""
    first = state.first_purchase_at or state.first_seen_at
    out: dict[str, Any] = {
        "days_since_last_purchase": days_between(state.last_purchase_at, as_of),
        "days_since_last_contact": days_between(state.last_contact_at, as_of),
        "tenure_days": days_between(first, as_of),
        "purchases": state.purchases,
        "total_spend": state.total_spend,
        "spend_last_90d": spend_between(state, as_of, 90),
        "spend_prev_90d": spend_between(state, as_of, 180, 90),
        "avg_days_between_purchases": state.avg_purchase_gap_days,
        "returns": state.returns,
        "complaints_30d": len(complaints_between(state, as_of, 30)),
        "complaints_90d": len(complaints_between(state, as_of, 90)),
        "open_complaints": state.open_complaints,
        "overdue_complaints": state.overdue_complaints,
        "last_nps": state.last_nps,
        "avg_nps": state.avg_nps,
        "last_csat": state.last_csat,
        "avg_csat": state.avg_csat,
        "sentiment": state.sentiment_ewma,
        f"{ATTRIBUTE_PREFIX}segment": state.segment,
    }
    for key, value in sorted(state.attributes.items()):
        if isinstance(value, str | int | float | bool) or value is None:
            out[f"{ATTRIBUTE_PREFIX}{key}"] = value
    return out


PROFILE_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # any time: a profile has no event whose age would matter


def profile_snapshot(segment: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a customer known only by its profile (no interactions yet): what `snapshot` gives
    for such a customer's state, whatever the time."""
    blank = FeatureState(customer_id="", segment=segment, attributes=dict(attributes))
    return snapshot(blank, PROFILE_TIME)


def label(name: str, value: Any) -> str:
    """A feature value in a retention manager's words: "contract: month-to-month", "2 complaints ..."."""
    if name.startswith(ATTRIBUTE_PREFIX):
        attribute = name[len(ATTRIBUTE_PREFIX) :]
        return f"{attribute}: {'not recorded' if value is None else value}"
    template = NUMERIC_LABELS.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{name.replace('_', ' ')}: not recorded"
    return template.format(v=float(value)) if template else f"{name}: {value}"
