"""Platform fixtures for tests/e2e and tests/security: the real platform processes on PostgreSQL and
the local Kafka broker.

`make test` (deploy/test.sh) starts the broker and the database server; these fixtures start the
services and the gateway with the same launcher as `make run`. Missing infrastructure fails the run
with a message saying how to start it: nothing is skipped silently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from bench.auth import UNTHROTTLED_ENV
from gateway.__main__ import issue_token
from gateway.settings import GatewaySettings
from runner.launcher import SERVICES, Platform, platform_processes
from servicekit.db import Database
from servicekit.settings import REPO_ROOT, state_dir

PORT_OFFSET = int(os.environ.get("CRM_TEST_PORT_OFFSET", "10000"))
GATEWAY = f"http://127.0.0.1:{8000 + PORT_OFFSET}"
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PG_PORT = int(os.environ.get("CRM_TEST_PG_PORT", os.environ.get("PG_PORT", "55432")))


def service_url(name: str) -> str:
    return f"http://127.0.0.1:{SERVICES[name] + PORT_OFFSET}"


def database_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres() -> None:
    if not _reachable("127.0.0.1", PG_PORT):
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:{PG_PORT}. Run `make test`, or `make pg-up`.")


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """A PostgreSQL database of its own, dropped afterwards; yields its URL."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def scratch_database(postgres: None) -> AsyncIterator[Database]:
    """A PostgreSQL database of its own with the plumbing tables (outbox, inbox), dropped afterwards."""
    from tests.unit.servicekit.conftest import metadata

    async with new_database() as url:
        database = Database(url)
        try:
            async with database.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            yield database
        finally:
            await database.dispose()


@pytest.fixture(scope="session")
def infrastructure(postgres: None) -> None:
    host, port = KAFKA.split(",")[0].rsplit(":", 1)
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable at {KAFKA}. Run `make test`, or start it with `make kafka-up`.")


@pytest.fixture(scope="session")
def platform(infrastructure: None) -> Iterator[Platform]:
    env = {"PG_PORT": str(PG_PORT)}
    subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "postgres.sh"), "reset-dbs"], check=True, env={**os.environ, **env}
    )
    # The gateway on PostgreSQL too, as deployed: its keys, rate buckets and audit log.
    urls = {name: database_url(name) for name in (*SERVICES, "gateway")}
    specs = platform_processes(
        database_urls=urls,
        port_offset=PORT_OFFSET,
        # The services check the gateway's signed internal credential, as in production; admins (the
        # tests' default caller) are not throttled, the other roles keep their defaults (bench.auth).
        extra_env={
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "CRM_INTERNAL_AUTH": "on",
            # The tests' webhook receivers listen on loopback, which production refuses (SSRF).
            "RETENTION_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            # Follow-ups are looked for every second, so a schedule's follow-ups fire within a test.
            "RETENTION_FOLLOWUP_INTERVAL_S": "1",
            # Attributes declared non-personal: customer events carry them, so the churn model can use them.
            "CUSTOMER_ERASURE_KEEP_ATTRIBUTES": '["tier", "value_tier", "contract", "seats"]',
            **UNTHROTTLED_ENV,
        },
    )
    running = Platform(specs, log_dir=state_dir() / "e2e-logs")
    try:
        running.start_all()
        running.wait_ready(timeout_s=120)
        yield running
    finally:
        running.stop_all()


def token(role: str = "admin", sub: str = "e2e-admin", team: list[str] | None = None) -> str:
    """A JWT the test platform's gateway accepts (same GATEWAY_JWT_SECRET as this process)."""
    return issue_token(GatewaySettings(), sub=sub, role=role, ttl_s=3600, team=team)


@pytest.fixture
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the public API, authenticated as an admin."""
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, headers=headers) as client:
        yield client


def log_dir() -> Path:
    return state_dir() / "e2e-logs"
