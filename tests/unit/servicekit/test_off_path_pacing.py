"""The customer consumer and the retention relay are on no path anyone waits on, so by default they gather
longer than the services on the complaint -> alert path: fewer batches and relay rounds, each a fixed cost.
Their own variables still set them."""

from __future__ import annotations

import pytest

from services.customer.settings import CustomerSettings
from services.interaction.settings import InteractionSettings
from services.retention.settings import RetentionSettings
from services.scoring.settings import ScoringSettings

POSTGRES = "postgresql+asyncpg://u:p@127.0.0.1:5432/svc"
SQLITE = "sqlite+aiosqlite:////tmp/off-path-pacing.db"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_CONSUMER_FETCH_WAIT_MS",
        "CUSTOMER_CONSUMER_FETCH_WAIT_MS",
        "RETENTION_RELAY_MIN_ROUND_INTERVAL_MS",
        "INTERACTION_RELAY_MIN_ROUND_INTERVAL_MS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("url", [POSTGRES, SQLITE])
def test_the_customer_consumer_gathers_half_a_second_on_either_store(url: str) -> None:
    assert CustomerSettings(database_url=url).consumer_kafka().consumer_fetch_wait_ms == 500


def test_consumers_on_the_alert_path_keep_the_broker_wide_wait_on_postgresql() -> None:
    for settings in (InteractionSettings(database_url=POSTGRES), ScoringSettings(database_url=POSTGRES)):
        assert settings.consumer_kafka().consumer_fetch_wait_ms == settings.kafka.consumer_fetch_wait_ms == 100


def test_the_retention_relay_paces_its_rounds_wider_than_the_interaction_relay_on_postgresql() -> None:
    assert RetentionSettings(database_url=POSTGRES).relay_round_interval_ms() == 50
    assert InteractionSettings(database_url=POSTGRES).relay_round_interval_ms() == 10


def test_their_own_variables_still_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_CONSUMER_FETCH_WAIT_MS", "40")
    monkeypatch.setenv("RETENTION_RELAY_MIN_ROUND_INTERVAL_MS", "5")
    assert CustomerSettings(database_url=POSTGRES).consumer_kafka().consumer_fetch_wait_ms == 40
    assert RetentionSettings(database_url=POSTGRES).relay_round_interval_ms() == 5
