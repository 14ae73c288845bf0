"""What the customer API's document states about its free-text values, so a generated client (and the API fuzz)
sends what the service accepts: each pattern matches exactly the text the validators in models.py and
attributes.py accept (tests/unit/customer/test_documented_values.py compares them on random text)."""

from __future__ import annotations

from typing import Any

from services.customer.customers.attributes import KEY_PATTERN, MAX_ATTRIBUTES, MAX_STRING

# What Python's str.strip() removes (str.isspace), as a JSON Schema (ECMA-262) character class body.
_SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_CONTROL = "\\u0000-\\u001f"

# A name: not blank once stripped, no NUL.
NAME_PATTERN = f"^[^\\u0000]*[^\\u0000{_SPACE}][^\\u0000]*$"
# A tag: stripped, 1-50 characters, none of them a control character.
TAG_PATTERN = f"^[{_SPACE}]*[^{_CONTROL}{_SPACE}]([^{_CONTROL}]{{0,48}}[^{_CONTROL}{_SPACE}])?[{_SPACE}]*$"
# An attribute value: a string that is not shaped like a date, an ISO date, a number or a boolean.
_DATE_SHAPE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
ATTRIBUTE_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STRING, "pattern": "^[^\\u0000]*$", "not": {"pattern": _DATE_SHAPE}},
        {"type": "string", "format": "date", "pattern": _DATE_SHAPE, "not": {"pattern": "^0000-"}},
        {"type": "number"},
        {"type": "boolean"},
    ],
    "description": "a string, number, boolean or ISO date (YYYY-MM-DD)",
}


def attributes_schema(*, patch: bool) -> dict[str, Any]:
    """The attributes object; in a PATCH a null value removes the attribute."""
    value = {"anyOf": [*ATTRIBUTE_VALUE["anyOf"], {"type": "null"}]} if patch else ATTRIBUTE_VALUE
    return {
        "type": "object",
        "maxProperties": MAX_ATTRIBUTES,
        "propertyNames": {"pattern": KEY_PATTERN.pattern},
        "additionalProperties": value,
    }
