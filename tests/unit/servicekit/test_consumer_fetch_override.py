"""A service's own consumer fetch wait and minimum override the broker-wide KAFKA_ ones, for its consumer only."""

from __future__ import annotations

from typing import Any

import pytest

from servicekit.db import Database
from servicekit.inbox import EventConsumer
from servicekit.inbox import consumer as consumer_module
from servicekit.kafka import make_consumer, set_idle_fetch
from servicekit.settings import KafkaSettings, ServiceSettings


def _settings(**fields: Any) -> ServiceSettings:
    kafka = KafkaSettings(consumer_fetch_wait_ms=100, consumer_fetch_min_bytes=65536, consumer_idle_fetch_wait_ms=500)
    return ServiceSettings(name="svc", database_url="sqlite+aiosqlite://", kafka=kafka, **fields)


def test_without_overrides_the_consumer_fetches_with_the_kafka_settings():
    settings = _settings()
    assert settings.consumer_kafka() is settings.kafka


def test_a_service_wait_overrides_the_kafka_wait_and_keeps_the_rest():
    settings = _settings(consumer_fetch_wait_ms=15)
    kafka = settings.consumer_kafka()
    assert kafka.consumer_fetch_wait_ms == 15
    assert kafka.consumer_fetch_min_bytes == 65536
    assert kafka.consumer_idle_fetch_wait_ms == 500
    assert kafka.bootstrap_servers == settings.kafka.bootstrap_servers
    assert settings.kafka.consumer_fetch_wait_ms == 100  # producers and other services' consumers unchanged


def test_a_service_minimum_overrides_the_kafka_minimum():
    kafka = _settings(consumer_fetch_min_bytes=1, consumer_fetch_wait_ms=0).consumer_kafka()
    assert (kafka.consumer_fetch_min_bytes, kafka.consumer_fetch_wait_ms) == (1, 0)


def test_the_overrides_are_read_under_the_service_prefix(monkeypatch: pytest.MonkeyPatch):
    class Svc(ServiceSettings):
        model_config = {"env_prefix": "SVC_"}

    monkeypatch.setenv("SVC_CONSUMER_FETCH_WAIT_MS", "20")
    monkeypatch.setenv("KAFKA_CONSUMER_FETCH_WAIT_MS", "100")
    settings = Svc(database_url="sqlite+aiosqlite://")
    assert settings.kafka.consumer_fetch_wait_ms == 100
    assert settings.consumer_kafka().consumer_fetch_wait_ms == 20


async def test_the_service_wait_reaches_aiokafka_and_survives_the_idle_switch():
    kafka = _settings(consumer_fetch_wait_ms=15, consumer_fetch_min_bytes=4096).consumer_kafka()
    consumer = make_consumer(kafka, "interactions", group_id="g", client_id="c", max_records=200)
    # aiokafka hands these to its fetcher at start; each fetch request carries them
    assert consumer._fetch_max_wait_ms == 15
    assert consumer._fetch_min_bytes == 4096

    class Fetcher:
        _fetch_min_bytes = 0
        _fetch_max_wait_ms = 0

    fetcher = consumer._fetcher = Fetcher()  # type: ignore[assignment]
    set_idle_fetch(consumer, kafka, idle=True)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 500)
    set_idle_fetch(consumer, kafka, idle=False)  # back from a lull: the service's own, not the broker-wide
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (4096, 15)


async def test_the_event_consumer_builds_its_kafka_consumer_with_the_service_overrides(
    monkeypatch: pytest.MonkeyPatch,
):
    seen: list[KafkaSettings] = []

    class Stop(Exception):
        pass

    def capture(kafka: KafkaSettings, *topics: str, **kwargs: Any) -> Any:
        seen.append(kafka)
        raise Stop

    monkeypatch.setattr(consumer_module, "make_consumer", capture)
    settings = _settings(consumer_fetch_wait_ms=10)
    consumer = EventConsumer(Database(settings.database_url), settings, {}, ["interactions"])
    with pytest.raises(Stop):
        await consumer._consume()
    assert [k.consumer_fetch_wait_ms for k in seen] == [10]
