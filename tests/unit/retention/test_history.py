"""History older than RETENTION_ALERT_HISTORY_HORIZON_DAYS updates scores but raises no alert."""

from datetime import UTC, datetime, timedelta

import pytest

from services.retention.settings import get_settings
from services.retention.signals import history
from tests.unit.retention.events import T0, complaint, score
from tests.unit.retention.test_handlers import alerts, apply, published, scores


def test_the_business_time_decides_not_the_time_of_computing():
    old = score(churn_risk=0.9).data
    old.as_of = T0 - timedelta(days=400)
    assert history.business_time(old) == T0 - timedelta(days=400)
    assert history.is_history(old, now=T0, horizon_days=30)
    assert not history.is_history(old, now=T0, horizon_days=0)  # no horizon: everything is live
    live = score(churn_risk=0.9).data  # as_of absent (an earlier producer): computed_at counts
    assert not history.is_history(live, now=T0 + timedelta(days=29), horizon_days=30)
    assert history.is_history(complaint().data, now=T0 + timedelta(days=31), horizon_days=30)


@pytest.fixture
def horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_ALERT_HISTORY_HORIZON_DAYS", "30")
    get_settings.cache_clear()


async def test_an_old_high_score_updates_the_latest_score_and_raises_nothing(database, horizon):
    old = score(churn_risk=0.95, clv=1000.0)
    old.data.as_of = datetime.now(UTC) - timedelta(days=365 * 20)
    old_complaint = complaint(severity="critical")
    old_complaint.data.opened_at = datetime.now(UTC) - timedelta(days=365 * 20)
    await apply(database, old, old_complaint)
    assert await alerts(database) == [] and await published(database) == []
    [latest] = await scores(database)
    assert latest.churn_risk == 0.95  # the score is kept: an evaluation later judges it


async def test_a_recent_score_still_raises_its_alert(database, horizon):
    live = score(churn_risk=0.95, clv=1000.0)
    live.data.as_of = datetime.now(UTC)
    live.data.computed_at = datetime.now(UTC)
    await apply(database, live)
    [alert] = await alerts(database)
    assert alert.reason == "high_churn_risk"
