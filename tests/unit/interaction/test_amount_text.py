"""The document's amount text pattern states exactly which text amounts the interaction API accepts."""

from __future__ import annotations

import random

from pydantic import ValidationError

from services.interaction.interactions.models import AMOUNT_SCHEMA, AMOUNT_TEXT, InteractionCreate


def accepted(amount: str) -> bool:
    try:
        InteractionCreate(customer_id="c-1", type="purchase", amount=amount, currency="EUR")  # type: ignore[arg-type]
    except ValidationError:
        return False
    return True


def test_the_documented_amount_text_is_exactly_the_accepted_text() -> None:
    rng = random.Random(7)
    samples = ["", " 1", "1e3", "+1", "1_000", ".5", "5.", "-0", "-0.00", "-1", "1.500", "1.555", "0" * 13 + "5"]
    samples += ["".join(rng.choice("0000123456789.-") for _ in range(rng.randint(0, 18))) for _ in range(20_000)]
    mismatched = [s for s in samples if accepted(s) != bool(AMOUNT_TEXT.match(s))]
    assert mismatched == []
    assert AMOUNT_SCHEMA["anyOf"][1]["pattern"] == AMOUNT_TEXT.pattern


def test_an_amount_in_another_notation_is_refused_naming_the_field() -> None:
    for text in ("1e3", " 1", "+1", "1_000", "١٢"):
        try:
            InteractionCreate(customer_id="c-1", type="purchase", amount=text, currency="EUR")  # type: ignore[arg-type]
        except ValidationError as exc:
            assert [e["loc"] for e in exc.errors()] == [("amount",)]
        else:
            raise AssertionError(f"{text!r} was accepted")
