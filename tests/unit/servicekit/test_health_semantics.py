"""Liveness never depends on Kafka or the database; readiness does, and says why (docs/health.md)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from servicekit.migrations import head_revision, upgrade
from servicekit.service import create_app
from servicekit.settings import KafkaSettings
from services.customer.main import SPEC
from services.customer.settings import CustomerSettings

UNREACHABLE_DB = "postgresql+asyncpg://crm@127.0.0.1:1/customer"  # nothing listens on port 1
DEAD_BROKER = KafkaSettings(bootstrap_servers="127.0.0.1:1")


def _app(database_url: str) -> FastAPI:
    settings = CustomerSettings(database_url=database_url, kafka=DEAD_BROKER)
    app = create_app(SPEC, settings)
    app.state.migration_head = head_revision(SPEC.migrations_dir)  # what the lifespan sets at start
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    # No lifespan: the relay and consumer never connect, exactly as with the broker down.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customer")


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'customer.db'}"
    upgrade(SPEC.migrations_dir, url, SPEC.name)
    return url


async def test_liveness_answers_200_with_the_database_unreachable_and_the_broker_down() -> None:
    async with _client(_app(UNREACHABLE_DB)) as client:
        response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "live"}


async def test_readiness_is_503_naming_the_unreachable_database_and_the_disconnected_kafka_clients() -> None:
    async with _client(_app(UNREACHABLE_DB)) as client:
        response = await client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["service"] == "customer"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]  # the exception class: why, without leaking the URL
    assert body["checks"]["kafka_producer"] == {"ok": False}
    assert body["checks"]["kafka_consumer"] == {"ok": False}


async def test_with_a_healthy_database_readiness_still_fails_on_the_broker_alone(migrated_sqlite: str) -> None:
    async with _client(_app(migrated_sqlite)) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")

    assert live.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == {"ok": True}
    assert checks["migrations"]["ok"] is True
    assert checks["kafka_producer"] == {"ok": False}


async def test_readiness_answer_is_exported_for_the_not_ready_alert() -> None:
    async with _client(_app(UNREACHABLE_DB)) as client:
        await client.get("/health/ready")

    assert REGISTRY.get_sample_value("crm_ready", {"service": "customer"}) == 0
    assert REGISTRY.get_sample_value("crm_ready_check", {"service": "customer", "check": "database"}) == 0
    assert REGISTRY.get_sample_value("crm_ready_check", {"service": "customer", "check": "kafka_producer"}) == 0
