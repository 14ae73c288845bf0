"""Events published by the interaction service on crm.interaction.v1."""

from datetime import datetime
from decimal import Decimal

from contracts import topics
from contracts.common import InteractionType, Severity
from servicekit.events.envelope import EventData


class InteractionEvent(EventData):
    topic = topics.INTERACTION
    customer_id: str


class InteractionRecorded(InteractionEvent):
    event_type = "interaction.recorded"
    interaction_id: str
    type: InteractionType
    channel: str | None = None
    initiated_by: str | None = None
    occurred_at: datetime
    amount: Decimal | None = None
    currency: str | None = None
    quantity: int | None = None
    order_id: str | None = None
    severity: Severity | None = None
    category: str | None = None
    rating: int | None = None
    sentiment: float | None = None
    offer_code: str | None = None  # a purchase that redeems a campaign offer (the ERP order carried its code)


class ComplaintOpened(InteractionEvent):
    event_type = "complaint.opened"
    complaint_id: str
    category: str | None = None
    severity: Severity
    opened_at: datetime
    due_at: datetime


class ComplaintUpdated(InteractionEvent):
    event_type = "complaint.updated"
    complaint_id: str
    previous_status: str
    status: str
    severity: Severity
    changed_at: datetime
    category: str | None = None
    due_at: datetime | None = None


class ComplaintOverdue(InteractionEvent):
    event_type = "complaint.overdue"
    complaint_id: str
    severity: Severity
    status: str
    due_at: datetime
    category: str | None = None
    detected_at: datetime | None = None  # when the SLA watcher noticed; emitted once per complaint


# Survey dimensions (satisfaction over the core product, service and support, and the relationship). A
# survey interaction names its dimension in its category; these spellings map to the dimension.
SURVEY_DIMENSIONS = {
    "product": "product",
    "service": "service",
    "support": "service",
    "service_and_support": "service",
    "service_support": "service",
    "relationship": "relationship",
}


def survey_dimension(category: str | None) -> str | None:
    """The dimension a survey interaction's category names, or None."""
    return SURVEY_DIMENSIONS.get((category or "").strip().lower())


class SurveyAnswered(InteractionEvent):
    event_type = "survey.answered"
    interaction_id: str
    survey: str  # "nps" (0-10) or "csat" (1-5)
    score: int
    answered_at: datetime
    # Which part of the relationship the answer rates: product, service (service and support) or
    # relationship; None when the survey did not say (and on events written before the field).
    dimension: str | None = None


MODELS = (InteractionRecorded, ComplaintOpened, ComplaintUpdated, ComplaintOverdue, SurveyAnswered)
