"""The prior period of a report period, also at the ends of the calendar."""

from __future__ import annotations

from datetime import UTC, datetime

from services.retention.reports.loyalty_queries import prior_period_start


def test_a_report_period_early_in_the_calendar_has_a_prior_period_from_the_earliest_time() -> None:
    start, end = datetime(1331, 5, 21, tzinfo=UTC), datetime(5861, 1, 7, tzinfo=UTC)
    assert prior_period_start(start, end) == datetime.min.replace(tzinfo=UTC)
    assert prior_period_start(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)) == datetime(
        2026, 1, 4, tzinfo=UTC
    )
