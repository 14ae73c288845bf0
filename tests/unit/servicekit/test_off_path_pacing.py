"""The customer consumer is on no path anyone waits on, so by default it gathers longer than the consumers on
the complaint -> alert path: fewer batches, each a fixed cost. Its own variable still sets it."""

from __future__ import annotations

import pytest

from services.customer.settings import CustomerSettings
from services.interaction.settings import InteractionSettings
from services.scoring.settings import ScoringSettings

POSTGRES = "postgresql+asyncpg://u:p@127.0.0.1:5432/svc"
SQLITE = "sqlite+aiosqlite:////tmp/off-path-pacing.db"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_CONSUMER_FETCH_WAIT_MS",
        "CUSTOMER_CONSUMER_FETCH_WAIT_MS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("url", [POSTGRES, SQLITE])
def test_the_customer_consumer_gathers_half_a_second_on_either_store(url: str) -> None:
    assert CustomerSettings(database_url=url).consumer_kafka().consumer_fetch_wait_ms == 500


def test_consumers_on_the_alert_path_keep_the_broker_wide_wait_on_postgresql() -> None:
    for settings in (InteractionSettings(database_url=POSTGRES), ScoringSettings(database_url=POSTGRES)):
        assert settings.consumer_kafka().consumer_fetch_wait_ms == settings.kafka.consumer_fetch_wait_ms == 100


def test_its_own_variable_still_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_CONSUMER_FETCH_WAIT_MS", "40")
    assert CustomerSettings(database_url=POSTGRES).consumer_kafka().consumer_fetch_wait_ms == 40
