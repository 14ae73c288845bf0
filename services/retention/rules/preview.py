"""Rule preview: replay stored events through one rule, the alerts it would have raised. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from contracts.common import Severity
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import EventData
from servicekit.types import as_utc
from services.retention.rules.core import Context, Rule, ScorePoint, evaluate, worse


@dataclass(frozen=True, slots=True)
class Signal:
    """One stored consumed event, as replayed by preview."""

    customer_id: str
    at: datetime
    data: EventData


@dataclass(slots=True)
class PreviewHit:
    customer_id: str
    first_triggered_at: datetime
    triggers: int = 1
    severity: Severity = Severity.low


@dataclass(frozen=True, slots=True)
class PreviewResult:
    alerts: int
    triggers: int
    customers: list[PreviewHit]


def preview(
    rule: Rule,
    signals: Iterable[Signal],
    *,
    start: datetime,
    end: datetime,
    tiers: dict[str, str | None] | None = None,
) -> PreviewResult:
    """Replay stored events through one rule: the alerts it would have raised in [start, end).

    One alert per customer (the live dedup: one open alert per customer and reason, assuming nobody
    resolved it within the period); signals before start only serve as score history.
    """
    tiers = tiers or {}
    start, end = as_utc(start), as_utc(end)
    history: dict[str, list[ScorePoint]] = {}
    hits: dict[str, PreviewHit] = {}
    total = 0
    for signal in sorted(signals, key=lambda s: as_utc(s.at)):
        at = as_utc(signal.at)
        if at >= end:
            break
        known = history.setdefault(signal.customer_id, [])
        context = Context(tier=tiers.get(signal.customer_id), history=tuple(known))
        if at >= start:
            for trigger in evaluate(signal.data, (rule,), context):
                total += 1
                hit = hits.get(signal.customer_id)
                if hit is None:
                    hits[signal.customer_id] = PreviewHit(signal.customer_id, at, 1, trigger.severity)
                else:
                    hit.triggers += 1
                    hit.severity = worse(hit.severity, trigger.severity)
        if isinstance(signal.data, ScoreUpdated):
            known.append(ScorePoint(at, signal.data.current.churn_risk, signal.data.current.lifecycle_stage))
    ordered = sorted(hits.values(), key=lambda h: (h.first_triggered_at, h.customer_id))
    return PreviewResult(alerts=len(ordered), triggers=total, customers=ordered)
