"""Retention on the real server: the catalog token's triggers, and the SSE stream when commits overtake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import insert, text

from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.migrations import upgrade
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import AlertChange
from services.retention.catalog.service import catalog
from services.retention.main import SPEC
from services.retention.stream import Broadcaster
from tests.e2e.conftest import new_database


@asynccontextmanager
async def migrated() -> AsyncIterator[Database]:
    """A new retention database at the migrations' head."""
    async with new_database() as url:
        # In a thread: the migration environment runs its own event loop.
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)
        database = Database(url)
        try:
            yield database
        finally:
            await database.dispose()


async def token(database: Database) -> str:
    async with database.sessions() as session:
        return (await session.execute(text("SELECT token FROM catalog_version"))).scalar_one()


async def test_every_kind_of_change_to_rules_playbooks_and_webhooks_renews_the_token(postgres: None):
    changes = [
        "UPDATE rules SET enabled = false WHERE id = 'default-severe-complaint'",
        "INSERT INTO webhooks (id, url, event_types, secret, active, created_at) "
        "VALUES ('w-1', 'https://hooks.example/crm', '[]', 'ssssssssssssssss', true, now())",
        "DELETE FROM playbooks WHERE reason = 'severe_complaint'",
        "TRUNCATE webhooks",
    ]
    async with migrated() as database:
        seen = [await token(database)]
        for change in changes:
            async with database.transaction() as session:
                await session.execute(text(change))
            seen.append(await token(database))
        assert len(set(seen)) == len(seen), seen

        async with database.transaction() as session:
            current = await catalog(UnitOfWork(session))
        assert current.token == seen[-1]
        assert "default-severe-complaint" not in {r.id for r in current.rules}
        assert "severe_complaint" not in current.playbooks
        assert current.subscribers == ()


async def test_a_change_rolled_back_leaves_the_token_as_it_was(postgres: None):
    async with migrated() as database:
        before = await token(database)
        async with database.sessions() as session, session.begin():
            await session.execute(text("UPDATE rules SET enabled = false"))
            assert (await session.execute(text("SELECT token FROM catalog_version"))).scalar_one() != before
            await session.rollback()
        assert await token(database) == before


def _ids(chunks: list[bytes]) -> list[int]:
    return [int(line.split(b": ")[1]) for c in chunks for line in c.split(b"\n") if line.startswith(b"id: ")]


async def test_the_stream_waits_for_a_lower_seq_that_commits_after_a_higher_one(postgres: None):
    row = {"event_type": "alert.raised", "data": {}}
    async with migrated() as database:
        hub = Broadcaster(database, poll_interval_s=60, gap_wait_s=5)
        await hub.start()
        live = hub.events(last_event_id=None, keepalive_s=60)
        assert await anext(live) == b": connected\n\n"
        async with database.sessions() as slow, slow.begin():
            await slow.execute(insert(AlertChange.__table__), [{**row, "alert_id": "slow", "at": utc_now()}])
            async with database.transaction() as fast:
                await fast.execute(insert(AlertChange.__table__), [{**row, "alert_id": "fast", "at": utc_now()}])
            await hub.poll()  # sees the higher seq only
            resumed = hub.events(last_event_id=0, keepalive_s=60)
            assert await anext(resumed) == b": connected\n\n"
            assert all(s.queue.empty() for s in hub.subscribers)
        await hub.poll()

        expected = [1, 2]  # the slow transaction drew seq 1
        assert _ids([await asyncio.wait_for(anext(live), 5) for _ in expected]) == expected
        assert _ids([await asyncio.wait_for(anext(resumed), 5) for _ in expected]) == expected
        await live.aclose()
        await resumed.aclose()
        await hub.stop()
