"""The retention catalog's token on the real server: the migration's statement triggers renew it."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from servicekit.db import Database
from servicekit.migrations import upgrade
from services.retention.catalog import catalog
from services.retention.main import SPEC
from tests.e2e.conftest import new_database


async def token(database: Database) -> str:
    async with database.sessions() as session:
        return (await session.execute(text("SELECT token FROM catalog_version"))).scalar_one()


async def test_every_kind_of_change_to_rules_playbooks_and_webhooks_renews_the_token(postgres: None):
    async with new_database() as url:
        # In a thread: the migration environment runs its own event loop.
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)
        database = Database(url)
        try:
            changes = [
                "UPDATE rules SET enabled = false WHERE id = 'default-severe-complaint'",
                "INSERT INTO webhooks (id, url, event_types, secret, active, created_at) "
                "VALUES ('w-1', 'https://hooks.example/crm', '[]', 'ssssssssssssssss', true, now())",
                "DELETE FROM playbooks WHERE reason = 'severe_complaint'",
                "TRUNCATE webhooks",
            ]
            seen = [await token(database)]
            for change in changes:
                async with database.transaction() as session:
                    await session.execute(text(change))
                seen.append(await token(database))
            assert len(set(seen)) == len(seen), seen

            async with database.transaction() as session:
                current = await catalog(session)
            assert current.token == seen[-1]
            assert "default-severe-complaint" not in {r.id for r in current.rules}
            assert "severe_complaint" not in current.playbooks
            assert current.subscribers == ()
        finally:
            await database.dispose()


async def test_a_change_rolled_back_leaves_the_token_as_it_was(postgres: None):
    async with new_database() as url:
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)
        database = Database(url)
        try:
            before = await token(database)
            async with database.sessions() as session, session.begin():
                await session.execute(text("UPDATE rules SET enabled = false"))
                assert (await session.execute(text("SELECT token FROM catalog_version"))).scalar_one() != before
                await session.rollback()
            assert await token(database) == before
        finally:
            await database.dispose()
