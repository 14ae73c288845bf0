"""The segment builder's filter language: a validated JSON structure. Pure: no I/O.

A filter is a list of conditions, all of which must hold::

    [{"field": "value_tier", "op": "in", "value": ["platinum", "gold"]},
     {"field": "churn_risk", "op": "gte", "value": 0.5},
     {"field": "rfm_segment", "op": "eq", "value": "at_risk"}]

Only the fields in FIELDS may be named; each has a type that decides the operators and values it takes.
A mistake is a FilterError naming the condition's path (``filter[1].field``), which the route answers as
a 422 problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contracts.common import ConsentStatus, ContactChannel
from services.scoring.value.measures import RFM_SEGMENTS, TIERS

NUMBER, TEXT = "number", "text"
MAX_CONDITIONS = 20
MAX_IN_VALUES = 100
MAX_TEXT = 100
# A number in a condition lies within +-MAX_NUMBER (a bound on every field it may be compared with).
MAX_NUMBER = 1e15

STAGES = ("exploration", "formation", "stability", "decline")
CONSENT_STATUSES = tuple(s.value for s in ConsentStatus)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: str
    description: str
    choices: tuple[str, ...] | None = None
    rfm: bool = False  # needs the RFM ranks (a window over every customer)


FIELDS: dict[str, FieldSpec] = {
    # scores
    "churn_risk": FieldSpec(NUMBER, "churn risk 0..1"),
    "health": FieldSpec(NUMBER, "health 0..100"),
    "clv": FieldSpec(NUMBER, "current value (CLV)"),
    "p_alive": FieldSpec(NUMBER, "P(alive) from the value model"),
    "value_at_risk": FieldSpec(NUMBER, "CLV x churn risk"),
    "value_tier": FieldSpec(TEXT, "pyramid tier by CLV", TIERS),
    "lifecycle_stage": FieldSpec(TEXT, "lifecycle stage", STAGES),
    # value counters
    "revenue": FieldSpec(NUMBER, "total spend to date"),
    "contribution": FieldSpec(NUMBER, "historical value: margin x revenue - cost to serve"),
    "purchases": FieldSpec(NUMBER, "number of purchases"),
    "complaints": FieldSpec(NUMBER, "complaints to date"),
    "returns": FieldSpec(NUMBER, "returns to date"),
    "referrals": FieldSpec(NUMBER, "referrals recorded"),
    "share_of_wallet": FieldSpec(NUMBER, "revenue / wallet estimate"),
    "last_nps": FieldSpec(NUMBER, "latest NPS answer 0..10"),
    "last_csat": FieldSpec(NUMBER, "latest CSAT answer 1..5"),
    # RFM
    "r": FieldSpec(NUMBER, "recency quintile 1..5", rfm=True),
    "f": FieldSpec(NUMBER, "frequency quintile 1..5", rfm=True),
    "m": FieldSpec(NUMBER, "monetary quintile 1..5", rfm=True),
    "rfm_segment": FieldSpec(TEXT, "RFM segment", RFM_SEGMENTS, rfm=True),
    # profile fields held in scoring's replica of the customer
    "segment": FieldSpec(TEXT, "the customer's segment"),
    "status": FieldSpec(TEXT, "customer status (active, churned, won_back, ...)"),
    "owner": FieldSpec(TEXT, "the account manager"),
    "team": FieldSpec(TEXT, "the customer's team attribute"),
    # consent per channel, from consent.changed: a channel never recorded matches no condition
    **{
        f"consent_{channel.value}": FieldSpec(TEXT, f"consent to {channel.value} contact", CONSENT_STATUSES)
        for channel in ContactChannel
    },
}

OPS: dict[str, frozenset[str]] = {
    NUMBER: frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in"}),
    TEXT: frozenset({"eq", "ne", "in"}),
}


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any  # float | str | tuple of either (op "in")


class FilterError(ValueError):
    def __init__(self, location: str, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


def _scalar(spec: FieldSpec, value: Any, where: str) -> Any:
    if spec.kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FilterError(where, "must be a finite number")
        if not -MAX_NUMBER <= value <= MAX_NUMBER or not math.isfinite(value):
            raise FilterError(where, f"must be a number from {-MAX_NUMBER:g} to {MAX_NUMBER:g}")
        return float(value)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise FilterError(where, f"must be a string of 1 to {MAX_TEXT} characters")
    if spec.choices is not None and value not in spec.choices:
        raise FilterError(where, "must be one of: " + ", ".join(spec.choices))
    return value


def parse(conditions: Any, *, location: str = "filter") -> tuple[Condition, ...]:
    """The validated conditions, or FilterError naming the first wrong part."""
    if not isinstance(conditions, list):
        raise FilterError(location, "must be a list of conditions")
    if len(conditions) > MAX_CONDITIONS:
        raise FilterError(location, f"at most {MAX_CONDITIONS} conditions")
    out: list[Condition] = []
    for i, raw in enumerate(conditions):
        at = f"{location}[{i}]"
        if not isinstance(raw, dict):
            raise FilterError(at, "must be an object with field, op and value")
        extra = set(raw) - {"field", "op", "value"}
        if extra:
            raise FilterError(f"{at}.{sorted(extra)[0]}", "unknown key (a condition has field, op and value)")
        name = raw.get("field")
        if not isinstance(name, str) or name not in FIELDS:
            raise FilterError(f"{at}.field", "unknown field; one of: " + ", ".join(sorted(FIELDS)))
        spec = FIELDS[name]
        op = raw.get("op")
        if not isinstance(op, str) or op not in OPS[spec.kind]:
            raise FilterError(f"{at}.op", f"for {name} one of: " + ", ".join(sorted(OPS[spec.kind])))
        if "value" not in raw:
            raise FilterError(f"{at}.value", "required")
        value = raw["value"]
        if op == "in":
            if not isinstance(value, list) or not 0 < len(value) <= MAX_IN_VALUES:
                raise FilterError(f"{at}.value", f"must be a list of 1 to {MAX_IN_VALUES} values")
            parsed: Any = tuple(_scalar(spec, v, f"{at}.value[{k}]") for k, v in enumerate(value))
        else:
            parsed = _scalar(spec, value, f"{at}.value")
        out.append(Condition(name, op, parsed))
    return tuple(out)


def _value_schema(spec: FieldSpec) -> dict[str, Any]:
    if spec.kind == NUMBER:
        return {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
    if spec.choices is not None:
        return {"type": "string", "enum": list(spec.choices)}
    return {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}


def _condition_schema(names: list[str], ops: list[str], value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["field", "op", "value"],
        "properties": {
            "field": {"type": "string", "enum": names},
            "op": {"type": "string", "enum": ops},
            "value": value,
        },
    }


def json_schema() -> dict[str, Any]:
    """The filter language as JSON Schema, what `parse` accepts: per field kind (and per field with its own
    choices), the operators and the value each takes, `in` with a list of 1 to MAX_IN_VALUES such values."""
    groups: dict[str, tuple[FieldSpec, list[str]]] = {}
    for name, spec in FIELDS.items():
        key = f"{spec.kind}:{','.join(spec.choices or ())}"
        groups.setdefault(key, (spec, []))[1].append(name)
    branches = []
    for spec, names in groups.values():
        value = _value_schema(spec)
        branches.append(_condition_schema(names, sorted(OPS[spec.kind] - {"in"}), value))
        values = {"type": "array", "minItems": 1, "maxItems": MAX_IN_VALUES, "items": value}
        branches.append(_condition_schema(names, ["in"], values))
    return {"type": "array", "maxItems": MAX_CONDITIONS, "items": {"anyOf": branches}}


def needs_rfm(conditions: tuple[Condition, ...]) -> bool:
    return any(FIELDS[c.field].rfm for c in conditions)


def holds(condition: Condition, actual: Any) -> bool:
    """Whether one customer's value satisfies the condition (None never does): the SQL's meaning, in Python."""
    if actual is None:
        return False
    v = condition.value
    match condition.op:
        case "eq":
            return bool(actual == v)
        case "ne":
            return bool(actual != v)
        case "lt":
            return bool(actual < v)
        case "lte":
            return bool(actual <= v)
        case "gt":
            return bool(actual > v)
        case "gte":
            return bool(actual >= v)
        case "in":
            return actual in v
    raise ValueError(condition.op)
