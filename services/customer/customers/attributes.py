"""Free-form customer attributes (plan, contract type, monthly charge, region, ...): pure rules.

An attribute value is one scalar JSON value: a string, a number or a boolean. A string that is an ISO
date (``YYYY-MM-DD``) counts as a date. Objects, lists and null are refused, so every attribute can be
used as one model feature and filtered on with ``attr.<key>=<value>``.

For filtering, every attribute is also kept as ``(key, type, value)`` with a canonical text value
(see ``index_value``), so one SQL equality works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
KEY_RULE = "a letter, then up to 63 letters, digits or underscores"
MAX_ATTRIBUTES = 100
MAX_STRING = 500
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch: ASCII digits, no trailing newline

STRING, NUMBER, BOOLEAN, DATE = "string", "number", "boolean", "date"


class InvalidAttribute(ValueError):
    """One attribute is not acceptable; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def check_key(key: str) -> None:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidAttribute(str(key), f"Attribute names are {KEY_RULE}")


def is_iso_date(value: str) -> bool:
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def value_type(key: str, value: Any) -> str:
    """The attribute's type, or InvalidAttribute saying why the value is not a scalar attribute."""
    # bool before int: in Python True is an int too.
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return NUMBER
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAttribute(key, "Numbers must be finite")
        return NUMBER
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidAttribute(key, f"Strings hold at most {MAX_STRING} characters")
        if _ISO_DATE.fullmatch(value) and not is_iso_date(value):
            raise InvalidAttribute(key, "Not a valid ISO date (YYYY-MM-DD)")
        return DATE if is_iso_date(value) else STRING
    if value is None:
        raise InvalidAttribute(key, "null is not a value; leave the attribute out (PATCH: null removes it)")
    if isinstance(value, dict):
        raise InvalidAttribute(key, "Nested objects are not allowed; use a string, number, boolean or ISO date")
    if isinstance(value, list | tuple):
        raise InvalidAttribute(key, "Lists are not allowed; use a string, number, boolean or ISO date")
    raise InvalidAttribute(key, "Must be a string, number, boolean or ISO date")


def validate(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes unchanged if every key and value is acceptable; else InvalidAttribute for the first bad one."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidAttribute("", f"At most {MAX_ATTRIBUTES} attributes")
    for key, value in attributes.items():
        check_key(key)
        value_type(key, value)
    return attributes


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch on the attributes: a key set to null is removed, others are set."""
    merged = dict(current)
    for key, value in patch.items():
        check_key(key)
        if value is None:
            merged.pop(key, None)
        else:
            value_type(key, value)
            merged[key] = value
    if len(merged) > MAX_ATTRIBUTES:
        raise InvalidAttribute("", f"At most {MAX_ATTRIBUTES} attributes")
    return merged


def canonical_number(value: float | int) -> str:
    """One text form per number: 29, 29.0 and 29.00 are all "29"; 29.9 is "29.9"."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**63:
        return str(int(value)) if isinstance(value, int) else str(int(number))
    return repr(number)


def index_value(value: Any) -> tuple[str, str]:
    """(type, canonical text) of a valid attribute value, as stored for filtering."""
    kind = value_type("", value)
    if kind == BOOLEAN:
        return kind, "true" if value else "false"
    if kind == NUMBER:
        return kind, canonical_number(value)
    return kind, value


def query_candidates(raw: str) -> list[tuple[str, str]]:
    """Every (type, canonical text) a filter value written as text may mean.

    ``attr.plan=pro`` matches the string "pro"; ``attr.seats=10`` matches the number 10 and the string
    "10"; ``attr.vip=true`` matches the boolean and the string "true".
    """
    candidates = [(STRING, raw)]
    if is_iso_date(raw):
        candidates.append((DATE, raw))
    if raw.lower() in ("true", "false"):
        candidates.append((BOOLEAN, raw.lower()))
    try:
        number = float(raw)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        candidates.append((NUMBER, canonical_number(number)))
    return candidates
