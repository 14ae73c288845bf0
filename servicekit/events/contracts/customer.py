"""Events published by the customer service on crm.customer.v1.

They carry ids, references and classification only, never names or contact details: personal data
stays in the customer master, so erasing it there does not leave copies in the Kafka log.
"""

from datetime import date, datetime
from typing import Any

from servicekit.events.contracts import topics
from servicekit.events.contracts.common import CustomerStatus
from servicekit.events.envelope import EventData


class CustomerEvent(EventData):
    topic = topics.CUSTOMER
    customer_id: str


class CustomerCreated(CustomerEvent):
    event_type = "customer.created"
    kind: str
    status: CustomerStatus
    external_ref: str | None = None
    segment: str | None = None
    owner: str | None = None
    tags: list[str] = []
    attributes: dict[str, Any] = {}
    created_at: datetime
    # Customers imported with their history: the day and reason code of their last churn.
    churned_at: date | None = None
    churn_reason: str | None = None
    side: str | None = None  # of the churn reason: company | customer | unknown
    voluntary: bool | None = None  # of the churn reason: false for dropped, relocation, closure


class CustomerUpdated(CustomerEvent):
    event_type = "customer.updated"
    version: int = 1
    changed: list[str] = []
    kind: str | None = None
    external_ref: str | None = None
    segment: str | None = None
    owner: str | None = None
    tags: list[str] = []
    attributes: dict[str, Any] = {}


class CustomerStatusChanged(CustomerEvent):
    event_type = "customer.status_changed"
    previous_status: CustomerStatus | None
    status: CustomerStatus
    reason: str | None = None  # churn reason code (services.customer.lifecycle.ChurnReason) when churned
    side: str | None = None  # of the churn reason: company | customer | unknown
    voluntary: bool | None = None  # of the churn reason: false for dropped, relocation, closure
    changed_at: datetime
    churned_at: date | None = None  # the day the customer churned (may lie before changed_at)
    version: int | None = None  # the customer's version after this change


class CustomerErased(CustomerEvent):
    event_type = "customer.erased"
    erased_at: datetime


MODELS = (CustomerCreated, CustomerUpdated, CustomerStatusChanged, CustomerErased)
