"""The pool's connections on the real server: an HTTP process opens its whole pool at start-up and keeps it,
so the server's backends for it are flat from the start however bursty its requests are."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy import text

from servicekit.db import Database
from tests.e2e.conftest import database_url
from tests.platform import PG_PORT


async def _backends(application_name: str) -> int:
    """The server backends open under this application_name (the pool's connections)."""
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres")
    try:
        count = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
    finally:
        await admin.close()
    return int(count)


async def test_an_opened_pool_holds_exactly_its_size_in_backends_through_a_burst(postgres: None):
    name = f"pool test {uuid.uuid4().hex[:8]}"
    database = Database(database_url("retention"), pool_size=4, application_name=name)
    try:
        assert await _backends(name) == 0
        assert await database.open_pool() == 4
        assert await _backends(name) == 4

        async def busy() -> None:
            async with database.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.02)"))

        await asyncio.gather(*(busy() for _ in range(20)))  # five times the pool: the rest wait for a connection
        assert await _backends(name) == 4
        assert database.engine.pool.checkedin() == 4  # type: ignore[attr-defined]
    finally:
        await database.dispose()
    assert await _backends(name) == 0


async def test_a_pool_not_opened_up_front_grows_with_its_bursts(postgres: None):
    """What opening up front replaces: the backends follow the largest burst seen so far."""
    name = f"pool test {uuid.uuid4().hex[:8]}"
    database = Database(database_url("retention"), pool_size=4, application_name=name)
    try:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        assert await _backends(name) == 1

        async def busy() -> None:
            async with database.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(*(busy() for _ in range(3)))
        assert await _backends(name) == 3
    finally:
        await database.dispose()
