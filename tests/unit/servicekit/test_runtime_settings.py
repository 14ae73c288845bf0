"""The pure part of run-time settings: checked like start-up, applied, their source and who changed them."""

import pytest
from pydantic import Field

from servicekit import runtime_settings as rs
from servicekit.settings import ServiceSettings


class Tuned(ServiceSettings):
    name: str = "tuned"
    limit: int = Field(10, ge=1, le=100)
    hours: dict[str, float] = Field(default_factory=lambda: {"high": 4.0})


def _base(**values: object) -> Tuned:
    return Tuned(database_url="sqlite+aiosqlite:///:memory:", **values)


def test_a_value_is_checked_with_the_settings_type_and_bounds() -> None:
    base = _base()
    assert rs.validated(base, "limit", 50) == 50
    for bad in (0, 101, "ten", None):
        with pytest.raises(rs.InvalidValue):
            rs.validated(base, "limit", bad)
    with pytest.raises(rs.InvalidValue, match="high"):
        rs.validated(base, "hours", {"high": "soon"})


def test_overrides_apply_and_an_invalid_one_keeps_the_configured_value() -> None:
    base = _base(limit=20)
    assert rs.apply(base, {}) is base
    tuned = rs.apply(base, {"limit": 30, "hours": {"high": 2}})
    assert tuned.limit == 30 and tuned.hours == {"high": 2.0}
    assert rs.apply(base, {"limit": 1000}).limit == 20


def test_the_source_default_and_actor() -> None:
    assert rs.source_of(_base(), "limit", overridden=False) == "default"
    assert rs.source_of(_base(limit=3), "limit", overridden=False) == "env"
    assert rs.source_of(_base(), "limit", overridden=True) == "override"
    assert rs.default_of(Tuned, "hours") == {"high": 4.0}
    assert rs.schema_of(Tuned, "limit")["maximum"] == 100
    assert rs.actor("kind=jwt&role=admin&sub=alice") == "alice (admin)"
    assert rs.actor("") == "unknown"


def test_a_date_time_is_text_never_a_number() -> None:
    from pydantic import TypeAdapter, ValidationError

    from servicekit.types import UtcDatetime

    adapter = TypeAdapter(UtcDatetime)
    assert adapter.validate_python("2026-12-07T01:00:00+01:00").hour == 0
    for bad in (0.5, 1700000000, True, "0.5", "1700000000", "2e-120"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)
