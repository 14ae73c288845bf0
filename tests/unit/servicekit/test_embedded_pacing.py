"""On a SQLite store (the embedded default) a consumer gathers longer and a relay paces its rounds wider,
unless a wait or interval is set; PostgreSQL stores keep the broker-wide and relay settings."""

from __future__ import annotations

import pytest

from servicekit.settings import KafkaSettings, ServiceSettings

SQLITE = "sqlite+aiosqlite:////tmp/embedded-pacing.db"
POSTGRES = "postgresql+asyncpg://u:p@127.0.0.1:5432/svc"


class Svc(ServiceSettings):
    model_config = {"env_prefix": "SVC_"}


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SVC_CONSUMER_FETCH_WAIT_MS", "KAFKA_CONSUMER_FETCH_WAIT_MS", "SVC_RELAY_MIN_ROUND_INTERVAL_MS"):
        monkeypatch.delenv(name, raising=False)


def test_on_sqlite_without_a_wait_set_the_consumer_gathers_for_the_embedded_wait() -> None:
    settings = Svc(database_url=SQLITE)
    kafka = settings.consumer_kafka()
    assert kafka.consumer_fetch_wait_ms == settings.sqlite_consumer_fetch_wait_ms == 250
    assert kafka.consumer_fetch_min_bytes == settings.kafka.consumer_fetch_min_bytes
    assert settings.kafka.consumer_fetch_wait_ms == 100  # the producers' and the broker-wide setting unchanged


def test_on_postgresql_the_consumer_keeps_the_kafka_wait() -> None:
    settings = Svc(database_url=POSTGRES)
    assert settings.consumer_kafka() is settings.kafka
    assert settings.consumer_kafka().consumer_fetch_wait_ms == 100


@pytest.mark.parametrize("variable", ["KAFKA_CONSUMER_FETCH_WAIT_MS", "SVC_CONSUMER_FETCH_WAIT_MS"])
def test_on_sqlite_a_wait_set_by_either_variable_wins(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "30")
    assert Svc(database_url=SQLITE).consumer_kafka().consumer_fetch_wait_ms == 30


def test_on_sqlite_a_wait_given_in_the_kafka_settings_wins() -> None:
    settings = Svc(database_url=SQLITE, kafka=KafkaSettings(consumer_fetch_wait_ms=100))
    assert settings.consumer_kafka().consumer_fetch_wait_ms == 100


def test_on_sqlite_the_relay_paces_its_rounds_by_the_embedded_interval_unless_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Svc(database_url=SQLITE).relay_round_interval_ms() == 50.0
    assert Svc(database_url=POSTGRES).relay_round_interval_ms() == 10.0
    monkeypatch.setenv("SVC_RELAY_MIN_ROUND_INTERVAL_MS", "10")
    assert Svc(database_url=SQLITE).relay_round_interval_ms() == 10.0
    assert Svc(database_url=SQLITE, sqlite_relay_min_round_interval_ms=20).relay_round_interval_ms() == 10.0
