"""The storage form of a customer's feature state: the customer_features row's column values. Pure."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from services.scoring.scores.features.state import ComplaintMark, FeatureState, PurchaseMark, utc

_DATETIME_FIELDS = frozenset(
    {
        "first_purchase_at",
        "last_purchase_at",
        "last_return_at",
        "last_nps_at",
        "last_csat_at",
        "last_contact_at",
        "first_seen_at",
        "last_event_at",
        "churned_at",
    }
)
STATE_FIELDS = tuple(f.name for f in fields(FeatureState))


def dump_state(state: FeatureState) -> dict[str, Any]:
    """Column values for the customer_features row: JSON-able lists and dicts, aware datetimes."""
    out: dict[str, Any] = {}
    for name in STATE_FIELDS:
        out[name] = getattr(state, name)
    out["recent_purchases"] = [[p.at.isoformat(), p.amount] for p in state.recent_purchases]
    out["recent_complaints"] = [[c.id, c.at.isoformat(), c.severity] for c in state.recent_complaints]
    out["open_complaint_ids"] = dict(state.open_complaint_ids)
    out["overdue_complaint_ids"] = sorted(state.overdue_complaint_ids)
    out["closed_complaint_ids"] = list(state.closed_complaint_ids)
    out["seen_ids"] = list(state.seen_ids)
    out["attributes"] = dict(state.attributes)
    out["consent"] = dict(state.consent)
    out["purchase_days"] = dict(state.purchase_days)
    # Counters kept as columns for queries and dashboards.
    out["open_complaints"] = state.open_complaints
    out["overdue_complaints"] = state.overdue_complaints
    return out


def load_state(values: dict[str, Any]) -> FeatureState:
    kwargs: dict[str, Any] = {name: values[name] for name in STATE_FIELDS if name in values}
    for name in _DATETIME_FIELDS:
        if kwargs.get(name) is not None:
            kwargs[name] = utc(kwargs[name])
    kwargs["recent_purchases"] = [
        PurchaseMark(at=utc(datetime.fromisoformat(at)), amount=float(amount))
        for at, amount in values.get("recent_purchases") or []
    ]
    kwargs["recent_complaints"] = [
        ComplaintMark(id=cid, at=utc(datetime.fromisoformat(at)), severity=sev)
        for cid, at, sev in values.get("recent_complaints") or []
    ]
    kwargs["open_complaint_ids"] = dict(values.get("open_complaint_ids") or {})
    kwargs["overdue_complaint_ids"] = set(values.get("overdue_complaint_ids") or [])
    kwargs["closed_complaint_ids"] = list(values.get("closed_complaint_ids") or [])
    kwargs["seen_ids"] = list(values.get("seen_ids") or [])
    kwargs["attributes"] = dict(values.get("attributes") or {})
    kwargs["consent"] = dict(values.get("consent") or {})
    kwargs["purchase_days"] = dict(values.get("purchase_days") or {})
    return FeatureState(**kwargs)
