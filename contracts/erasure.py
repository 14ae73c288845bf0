"""Erasure receipts on crm.erasure.v1: each service confirms it removed a customer's personal data."""

from datetime import datetime

from contracts import topics
from servicekit.events.envelope import EventData


class ErasureConfirmed(EventData):
    topic = topics.ERASURE
    event_type = "erasure.confirmed"
    customer_id: str
    service: str  # the service that erased its copy
    erased_at: datetime
    # What was removed and what anonymous aggregates were kept, in words, for the receipt.
    summary: str = ""


MODELS = (ErasureConfirmed,)
