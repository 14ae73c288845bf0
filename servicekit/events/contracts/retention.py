"""Events published by the retention service on crm.retention.v1."""

from datetime import datetime

from servicekit.events.contracts import topics
from servicekit.events.contracts.scoring import Factor
from servicekit.events.envelope import EventData


class AlertEvent(EventData):
    topic = topics.RETENTION
    alert_id: str
    customer_id: str
    reason: str
    severity: str
    status: str
    trigger_count: int
    churn_risk: float | None = None  # the customer's latest known churn risk
    value_at_risk: float | None = None
    owner: str | None = None
    factors: list[Factor] = []
    event_ids: list[str] = []
    at: datetime


class AlertRaised(AlertEvent):
    event_type = "alert.raised"


class AlertUpdated(AlertEvent):
    event_type = "alert.updated"


class AlertResolved(AlertEvent):
    event_type = "alert.resolved"
    outcome: str | None = None


MODELS = (AlertRaised, AlertUpdated, AlertResolved)
