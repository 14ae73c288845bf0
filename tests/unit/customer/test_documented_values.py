"""The customer API's document states exactly which names, tags and attributes the service accepts: its patterns
and schemas, checked as a JSON Schema validator checks them, agree with the validators on random text."""

from __future__ import annotations

import random
from typing import Any

import jsonschema_rs
from pydantic import ValidationError

from services.customer.customers.models import CustomerCreate

# No NUL: the platform refuses it anywhere in a request before a model sees it (servicekit.validation), and the
# document says so on every string.
ALPHABET = ["a", "Z", "7", "0", "-", "_", " ", "\t", "\n", "\x1c", "\x01", "\x85", "\xa0", "\u3000", "\ufeff", "é"]
DATES = [
    "2026-02-28",
    "2026-02-30",
    "0000-01-01",
    "2024-02-29",
    "2023-02-29",
    "1999-12-31",
    "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",
    "2026-1-01",
]


def _text(rng: random.Random, longest: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, longest)))


def _accepted(**fields: Any) -> bool:
    try:
        CustomerCreate(name=fields.pop("name", "Acme"), **fields)
    except ValidationError:
        return False
    return True


PROPERTIES = CustomerCreate.model_json_schema()["properties"]
VALIDATORS = {
    name: jsonschema_rs.validator_for(PROPERTIES[name], validate_formats=True)
    for name in ("name", "tags", "attributes")
}


def _documented(field: str, value: Any) -> bool:
    return bool(VALIDATORS[field].is_valid(value))


def test_a_documented_name_is_exactly_an_accepted_name() -> None:
    rng = random.Random(3)
    names = [_text(rng, 8) for _ in range(2000)] + [" ", "\u3000", " a ", "\ufeff", "\x85a"]
    assert [n for n in names if _accepted(name=n) != _documented("name", n)] == []


def test_a_documented_tag_is_exactly_an_accepted_tag() -> None:
    rng = random.Random(4)
    tags = [_text(rng, 8) for _ in range(2000)] + ["a" * 50, " " + "a" * 50 + "\t", "a" * 51, "a\x01b", "\ta\n"]
    assert [t for t in tags if _accepted(tags=[t]) != _documented("tags", [t])] == []


def test_documented_attributes_are_exactly_accepted_attributes() -> None:
    rng = random.Random(5)
    keys = [_text(rng, 6) for _ in range(1000)] + ["a\n", "a" * 64, "a" * 65, "é"]
    values: list[Any] = [_text(rng, 12) for _ in range(1000)] + DATES + [1, 2.5, True, None, [], {}, "x" * 501]
    attributes = [{k: "v"} for k in keys] + [{"k": v} for v in values]
    disagree = [a for a in attributes if _accepted(attributes=a) != _documented("attributes", a)]
    assert disagree == []
