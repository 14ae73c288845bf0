from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.interaction.interactions.models import InteractionCreate


def errors(**fields: Any) -> dict[str, str]:
    """{field: error type} of an InteractionCreate built from fields; empty if it is valid."""
    try:
        InteractionCreate(customer_id="c-1", **fields)
    except ValidationError as exc:
        return {".".join(str(p) for p in e["loc"]): e["type"] for e in exc.errors()}
    return {}


def test_a_minimal_call_is_valid_and_happened_now():
    before = datetime.now(UTC)
    interaction = InteractionCreate(customer_id="c-1", type="call")
    assert before <= interaction.occurred_at <= datetime.now(UTC)


def test_type_must_be_one_of_the_interaction_types():
    assert errors(type="fax") == {"type": "enum"}
    assert errors() == {"type": "missing"}


def test_a_complaint_without_severity_is_refused_naming_severity():
    assert errors(type="complaint") == {"severity": "missing"}
    assert errors(type="complaint", severity="urgent") == {"severity": "enum"}
    assert errors(type="complaint", severity="high") == {}


def test_severity_may_accompany_other_types_such_as_tickets():
    assert errors(type="ticket", severity="low") == {}


def test_a_purchase_needs_an_amount_and_an_amount_needs_a_currency():
    assert errors(type="purchase") == {"amount": "missing"}
    assert errors(type="purchase", amount="19.99") == {"currency": "missing"}
    assert errors(type="return", amount="5", currency="EUR") == {}
    assert errors(type="return") == {}


def test_amount_is_non_negative_with_at_most_two_decimals():
    assert errors(type="purchase", amount="-0.01", currency="EUR") == {"amount": "greater_than_equal"}
    assert errors(type="purchase", amount="1.999", currency="EUR") == {"amount": "decimal_max_places"}
    assert errors(type="purchase", amount="123456789012.34", currency="EUR") == {}
    assert errors(type="purchase", amount="1234567890123.4", currency="EUR") == {"amount": "decimal_whole_digits"}
    free = InteractionCreate(customer_id="c-1", type="purchase", amount=0, currency="EUR")
    assert free.amount == Decimal("0")


@pytest.mark.parametrize("currency", ["eur", "EU", "EURO", "E1R"])
def test_currency_is_three_upper_case_letters(currency):
    problems = errors(type="purchase", amount="1", currency=currency)
    assert list(problems) == ["currency"]
    assert problems["currency"] in {"string_pattern_mismatch", "string_too_short", "string_too_long"}


def test_a_survey_needs_its_kind_and_score():
    assert errors(type="survey") == {"survey": "missing", "score": "missing"}
    assert errors(type="survey", survey="nps") == {"score": "missing"}
    assert errors(type="survey", survey="ces", score=3) == {"survey": "enum"}


@pytest.mark.parametrize(
    ("survey", "score", "ok"),
    [
        ("nps", 0, True),
        ("nps", 10, True),
        ("nps", 11, False),
        ("nps", -1, False),
        ("csat", 1, True),
        ("csat", 5, True),
        ("csat", 0, False),
        ("csat", 6, False),
    ],
)
def test_survey_scores_keep_to_the_scale_of_their_kind(survey, score, ok):
    assert errors(type="survey", survey=survey, score=score) == ({} if ok else {"score": "out_of_range"})


def test_survey_fields_are_refused_on_other_types_rather_than_dropped():
    assert errors(type="call", survey="nps") == {"survey": "extra_forbidden"}
    assert errors(type="feedback", score=9) == {"score": "extra_forbidden"}


def test_sentiment_lies_between_minus_one_and_one():
    assert errors(type="chat", sentiment=-1) == {}
    assert errors(type="chat", sentiment=1) == {}
    assert errors(type="chat", sentiment=1.01) == {"sentiment": "less_than_equal"}
    assert errors(type="chat", sentiment=-1.01) == {"sentiment": "greater_than_equal"}


def test_rating_is_one_to_five_stars():
    assert errors(type="feedback", rating=5) == {}
    assert errors(type="feedback", rating=0) == {"rating": "greater_than_equal"}


def test_text_is_at_most_5000_characters():
    assert errors(type="email", text="x" * 5000) == {}
    assert errors(type="email", text="x" * 5001) == {"text": "string_too_long"}


def test_occurred_at_may_lie_in_the_past_or_up_to_five_minutes_ahead():
    now = datetime.now(UTC)
    assert errors(type="call", occurred_at=now - timedelta(days=400)) == {}
    assert errors(type="call", occurred_at=now + timedelta(minutes=4)) == {}
    assert errors(type="call", occurred_at=now + timedelta(minutes=6)) == {"occurred_at": "future"}


def test_occurred_at_is_stored_in_utc_and_a_time_without_offset_is_utc():
    local = InteractionCreate(customer_id="c", type="call", occurred_at="2026-03-01T10:00:00+08:00")
    assert local.occurred_at == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert local.occurred_at.tzinfo is UTC
    naive = InteractionCreate(customer_id="c", type="call", occurred_at="2026-03-01T10:00:00")
    assert naive.occurred_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert naive.occurred_at.utcoffset() == timedelta(0)


def test_channel_and_category_are_normalised_tokens():
    interaction = InteractionCreate(customer_id="c", type="call", channel=" Phone ", category="Delivery")
    assert (interaction.channel, interaction.category) == ("phone", "delivery")


def test_initiated_by_is_the_customer_or_the_company():
    assert errors(type="call", initiated_by="company") == {}
    assert errors(type="call", initiated_by="partner") == {"initiated_by": "enum"}
