"""InteractionPublic.of_values (the answer to a post recorded now, read from its column values) is the
model, and the bytes, that InteractionPublic.of reads from the draft's attributes."""

from datetime import UTC, datetime
from typing import Any

import pytest

from services.interaction.interactions.models import InteractionCreate, InteractionPublic
from services.interaction.interactions.store import new_draft

SLA_HOURS = {"low": 72.0, "medium": 48.0, "high": 24.0, "critical": 4.0}
BODIES: list[dict[str, Any]] = [
    {"customer_id": "c-1", "type": "purchase", "amount": "42.50", "currency": "EUR", "channel": "web"},
    {"customer_id": "c-1", "type": "complaint", "severity": "high", "category": "billing", "text": "late"},
    {"customer_id": "c-1", "type": "survey", "survey": "nps", "score": 7, "external_id": "s-1"},
    {"customer_id": "c-1", "type": "purchase", "amount": 19.5, "currency": "USD", "quantity": 3, "rating": 4},
    {"customer_id": "c-1", "type": "email", "occurred_at": "2026-11-01T10:00:00+05:30", "sentiment": -0.25},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_answer_from_column_values_is_the_answer_from_attributes(body: dict[str, Any]) -> None:
    draft = new_draft(InteractionCreate.model_validate(body), SLA_HOURS, now=datetime(2026, 12, 7, 18, tzinfo=UTC))
    from_values, from_attributes = InteractionPublic.of_values(vars(draft)), InteractionPublic.of(draft)
    assert from_values == from_attributes
    assert from_values.model_fields_set == from_attributes.model_fields_set
    assert InteractionPublic.__pydantic_serializer__.to_json(from_values) == from_attributes.model_dump_json().encode()
