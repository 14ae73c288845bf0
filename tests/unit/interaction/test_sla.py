from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.common import Severity
from services.interaction.complaints.sla import ComplaintStatus, due_at, is_overdue
from services.interaction.settings import InteractionSettings
from tests.unit.interaction.conftest import SLA_HOURS

OPENED = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(("severity", "hours"), [("critical", 4), ("high", 24), ("medium", 72), (Severity.low, 168)])
def test_due_at_adds_the_sla_hours_of_the_severity(severity, hours):
    assert due_at(OPENED, severity, SLA_HOURS) == OPENED + timedelta(hours=hours)


def test_due_at_crosses_midnight_and_month_end_in_calendar_hours():
    assert due_at(datetime(2026, 2, 28, 23, 0, tzinfo=UTC), "high", SLA_HOURS) == datetime(
        2026, 3, 1, 23, 0, tzinfo=UTC
    )


def test_due_at_takes_fractional_hours():
    assert due_at(OPENED, "critical", {**SLA_HOURS, "critical": 1.5}) == OPENED + timedelta(minutes=90)


def test_due_at_is_in_utc_whatever_the_offset_of_the_opening_time():
    opened = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))  # 00:00 UTC
    due = due_at(opened, "critical", SLA_HOURS)
    assert due == datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_due_at_treats_a_naive_opening_time_as_utc():
    assert due_at(datetime(2026, 3, 1, 0, 0), "critical", SLA_HOURS) == datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


def test_due_at_refuses_a_severity_without_an_sla():
    with pytest.raises(ValueError, match="urgent"):
        due_at(OPENED, "urgent", SLA_HOURS)
    with pytest.raises(ValueError, match="critical"):
        due_at(OPENED, "critical", {"low": 1})


def test_a_running_complaint_is_overdue_only_after_its_due_time():
    due = OPENED + timedelta(hours=4)
    assert not is_overdue(due, ComplaintStatus.open, now=due - timedelta(seconds=1))
    assert not is_overdue(due, ComplaintStatus.open, now=due)
    assert is_overdue(due, ComplaintStatus.open, now=due + timedelta(seconds=1))
    assert is_overdue(due, "acknowledged", now=due + timedelta(days=1))
    assert is_overdue(due, "valid", now=due + timedelta(days=1))


@pytest.mark.parametrize("status", ["rejected", "resolved", "followed_up"])
def test_the_sla_stops_once_a_complaint_is_answered(status):
    assert not is_overdue(OPENED, status, now=OPENED + timedelta(days=30))


def test_an_interaction_without_due_time_or_complaint_status_is_never_overdue():
    later = OPENED + timedelta(days=30)
    assert not is_overdue(None, ComplaintStatus.open, now=later)
    assert not is_overdue(OPENED, None, now=later)


def test_is_overdue_compares_a_naive_stored_due_time_as_utc():
    naive_due = datetime(2026, 3, 1, 12, 0)  # as SQLite hands it back
    assert is_overdue(naive_due, "open", now=datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    assert not is_overdue(naive_due, "open", now=datetime(2026, 3, 1, 13, 59, tzinfo=timezone(timedelta(hours=2))))


def test_settings_default_to_the_documented_slas_and_fill_in_severities_left_out(monkeypatch):
    monkeypatch.delenv("INTERACTION_COMPLAINT_SLA_HOURS", raising=False)
    assert InteractionSettings(database_url="sqlite+aiosqlite://").complaint_sla_hours == SLA_HOURS
    monkeypatch.setenv("INTERACTION_COMPLAINT_SLA_HOURS", '{"critical": 2}')
    assert InteractionSettings(database_url="sqlite+aiosqlite://").complaint_sla_hours == {**SLA_HOURS, "critical": 2}


@pytest.mark.parametrize("bad", ['{"urgent": 2}', '{"high": 0}'])
def test_settings_refuse_unknown_severities_and_non_positive_slas(monkeypatch, bad):
    monkeypatch.setenv("INTERACTION_COMPLAINT_SLA_HOURS", bad)
    with pytest.raises(ValueError, match="complaint_sla_hours"):
        InteractionSettings(database_url="sqlite+aiosqlite://")
