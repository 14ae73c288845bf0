"""Builders of the consumed events, as the retention handlers receive them."""

from datetime import UTC, datetime, timedelta

from contracts.customer import (
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import Factor, ScoreUpdated, ScoreValues
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


def overdue(customer_id: str = "c-1", severity: str = "medium", *, minutes: int = 0) -> Received[ComplaintOverdue]:
    data = ComplaintOverdue(
        customer_id=customer_id,
        complaint_id=f"k-{customer_id}-{minutes}",
        severity=severity,
        status="open",
        due_at=T0 + timedelta(minutes=minutes),
    )
    return received(data, "/crm/interaction")


def survey(
    customer_id: str = "c-1", kind: str = "nps", value: int = 3, *, minutes: int = 0
) -> Received[SurveyAnswered]:
    data = SurveyAnswered(
        customer_id=customer_id,
        interaction_id=f"i-{customer_id}-{minutes}",
        survey=kind,
        score=value,
        answered_at=T0 + timedelta(minutes=minutes),
    )
    return received(data, "/crm/interaction")


def score(
    customer_id: str = "c-1",
    churn_risk: float = 0.7,
    *,
    clv: float | None = 1000.0,
    minutes: int = 0,
    days: float = 0,
    tier: str | None = "gold",
    p_alive: float | None = None,
    stage: str | None = None,
    previous: ScoreValues | None = None,
) -> Received[ScoreUpdated]:
    data = ScoreUpdated(
        customer_id=customer_id,
        previous=previous,
        current=ScoreValues(
            churn_risk=churn_risk,
            health=100 * (1 - churn_risk),
            clv=clv,
            value_tier=tier,
            p_alive=p_alive,
            lifecycle_stage=stage,
        ),
        factors=[Factor(code="recency_drop", label="No purchase for 90 days", contribution=0.3)],
        model_version="rules-1",
        caused_by="some-event",
        computed_at=T0 + timedelta(minutes=minutes, days=days),
    )
    return received(data, "/crm/scoring")


def created(
    customer_id: str = "c-1", *, owner: str | None = "anna", segment: str = "smb", tier: str | None = None
) -> Received[CustomerCreated]:
    data = CustomerCreated(
        customer_id=customer_id,
        kind="company",
        status="active",
        segment=segment,
        owner=owner,
        attributes={"tier": tier} if tier else {},
        created_at=T0 - timedelta(days=365),
    )
    return received(data, "/crm/customer")


def updated(customer_id: str = "c-1", *, version: int = 2, owner: str | None = "ben") -> Received[CustomerUpdated]:
    data = CustomerUpdated(customer_id=customer_id, version=version, changed=["owner"], owner=owner)
    return received(data, "/crm/customer")


def status_changed(
    customer_id: str = "c-1", status: str = "churned", *, days: float = 1, previous: str = "active"
) -> Received[CustomerStatusChanged]:
    data = CustomerStatusChanged(
        customer_id=customer_id,
        previous_status=previous,
        status=status,
        reason="price",
        changed_at=T0 + timedelta(days=days),
    )
    return received(data, "/crm/customer")


def erased(customer_id: str = "c-1") -> Received[CustomerErased]:
    return received(CustomerErased(customer_id=customer_id, erased_at=T0 + timedelta(days=2)), "/crm/customer")
