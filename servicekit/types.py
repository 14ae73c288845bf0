"""Column types every service shares."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores none and returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value) if value is not None else None


_NUMERAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _date_time_text(value: Any) -> Any:
    # A date-time is text (RFC 3339): a number, a boolean or a numeral (a query string's number) is refused
    # rather than read as Unix time.
    if isinstance(value, bool | int | float) or (isinstance(value, str) and _NUMERAL.fullmatch(value)):
        raise ValueError("must be a date-time string (RFC 3339), not a number")
    return value


# A date-time field of an API model: text only on input (as its schema says), always UTC once read.
UtcDatetime = Annotated[datetime, BeforeValidator(_date_time_text), AfterValidator(as_utc)]


def null_refused(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of an optional field that refuses an explicit null: its schema shows no null."""
    options = schema.pop("anyOf", None)
    if not isinstance(options, list):
        return
    kept = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
    if len(kept) == 1 and isinstance(kept[0], dict):
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


def json_number(value: Any) -> Any:
    """A ``mode="before"`` field validator's check: a JSON number only, so true, false or a numeral in a string
    are refused rather than read as a number (the schema, which says number or integer, is unchanged)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value
