"""Builders of the consumed events, as the scoring handlers receive them."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.customer import CustomerCreated, CustomerErased, CustomerUpdated
from contracts.interaction import (
    ComplaintOverdue,
    ComplaintUpdated,
    InteractionRecorded,
    SurveyAnswered,
)
from servicekit.events.envelope import CloudEvent, EventData, Received

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def received(data: EventData, source: str = "/crm/interaction", *, time: datetime | None = None) -> Received:
    envelope = CloudEvent.wrap(data, source=source)
    if time is not None:
        envelope.time = time
    return Received(envelope=envelope, data=data)


def interaction(
    customer_id: str = "c-1",
    type: str = "call",
    *,
    id: str,
    days: float = 0,
    amount: float | None = None,
    severity: str | None = None,
    sentiment: float | None = None,
) -> Received[InteractionRecorded]:
    data = InteractionRecorded(
        customer_id=customer_id,
        interaction_id=id,
        type=type,
        occurred_at=T0 + timedelta(days=days),
        amount=None if amount is None else Decimal(str(amount)),
        severity=severity,
        sentiment=sentiment,
    )
    return received(data)


def purchase(customer_id: str = "c-1", *, id: str, days: float = 0, amount: float = 100.0) -> Received:
    return interaction(customer_id, "purchase", id=id, days=days, amount=amount)


def complaint(customer_id: str = "c-1", *, id: str, days: float = 0, severity: str = "medium") -> Received:
    return interaction(customer_id, "complaint", id=id, days=days, severity=severity)


def complaint_updated(
    customer_id: str = "c-1",
    *,
    id: str,
    status: str,
    days: float = 0,
    severity: str = "medium",
    previous_status: str = "open",
) -> Received[ComplaintUpdated]:
    data = ComplaintUpdated(
        customer_id=customer_id,
        complaint_id=id,
        previous_status=previous_status,
        status=status,
        severity=severity,
        changed_at=T0 + timedelta(days=days),
    )
    return received(data)


def complaint_overdue(customer_id: str = "c-1", *, id: str, days: float = 0, severity: str = "medium") -> Received:
    due = T0 + timedelta(days=days)
    data = ComplaintOverdue(customer_id=customer_id, complaint_id=id, severity=severity, status="open", due_at=due)
    return received(data, time=due + timedelta(minutes=5))


def survey(
    customer_id: str = "c-1", *, id: str, survey: str = "nps", score: int, days: float = 0
) -> Received[SurveyAnswered]:
    data = SurveyAnswered(
        customer_id=customer_id, interaction_id=id, survey=survey, score=score, answered_at=T0 + timedelta(days=days)
    )
    return received(data)


def customer_created(customer_id: str = "c-1", *, segment: str | None = "smb", status: str = "active") -> Received:
    data = CustomerCreated(
        customer_id=customer_id,
        kind="company",
        status=status,
        segment=segment,
        attributes={"plan": "pro"},
        created_at=T0,
    )
    return received(data, "/crm/customer")


def customer_updated(customer_id: str = "c-1", *, segment: str, version: int, changed: list[str]) -> Received:
    data = CustomerUpdated(customer_id=customer_id, version=version, changed=changed, segment=segment)
    return received(data, "/crm/customer")


def customer_erased(customer_id: str = "c-1") -> Received:
    return received(CustomerErased(customer_id=customer_id, erased_at=T0), "/crm/customer")
