"""Builders of the consumed events, as the retention handlers receive them."""

from datetime import UTC, datetime, timedelta

from servicekit.events.contracts.interaction import ComplaintOpened
from servicekit.events.contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.events.envelope import CloudEvent, EventData, Received

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def received(data: EventData, source: str) -> Received:
    return Received(envelope=CloudEvent.wrap(data, source=source), data=data)


def complaint(
    customer_id: str = "c-1", severity: str = "critical", *, minutes: int = 0, category: str | None = "delivery"
) -> Received[ComplaintOpened]:
    at = T0 + timedelta(minutes=minutes)
    data = ComplaintOpened(
        customer_id=customer_id,
        complaint_id=f"k-{customer_id}-{minutes}",
        category=category,
        severity=severity,
        opened_at=at,
        due_at=at + timedelta(days=2),
    )
    return received(data, "/crm/interaction")


def score(
    customer_id: str = "c-1", churn_risk: float = 0.7, *, clv: float | None = 1000.0, minutes: int = 0
) -> Received[ScoreUpdated]:
    data = ScoreUpdated(
        customer_id=customer_id,
        previous=None,
        current=ScoreValues(churn_risk=churn_risk, health=100 * (1 - churn_risk), clv=clv, value_tier="gold"),
        factors=[Factor(code="recency_drop", label="No purchase for 90 days", contribution=0.3)],
        model_version="rules-1",
        caused_by="some-event",
        computed_at=T0 + timedelta(minutes=minutes),
    )
    return received(data, "/crm/scoring")
