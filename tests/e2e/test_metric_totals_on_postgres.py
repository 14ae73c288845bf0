"""/retention/metrics' read model on PostgreSQL: the migration's backfill and the totals kept event by event
give the exact metrics (tests/unit/retention/test_metric_totals.py, on the real server); a refresh's one read
equals the separate reads, and its one locking statement keeps the lock order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit.db import Database
from servicekit.migrations import upgrade
from services.retention.db import metadata
from services.retention.main import SPEC
from services.retention.outcomes import read_model
from services.retention.outcomes import refresh_reads as reads
from tests.e2e.conftest import new_database
from tests.unit.retention.older_schema import seed_with_todays_models
from tests.unit.retention.test_metric_totals import (
    BEFORE_TOTALS,
    _read_model,
    apply_history,
    assert_kept_totals_are_exact,
    assert_same_as_exact,
    periods,
    rebuild,
)
from tests.unit.retention.test_metric_totals_rebuild import (
    test_an_event_committed_between_chunks_is_counted_with_the_new_look_back as chunked_rebuild_with_an_event,
)
from tests.unit.retention.test_metrics_paging import START, _seed_random
from tests.unit.retention.test_refresh_reads import assert_one_read_equals_the_separate_reads
from tests.unit.retention.test_refresh_writes import (
    assert_one_new_alert_rewrites_only_the_rows_it_changes,
    assert_refresh_writes_what_a_full_rewrite_wrote,
)


@asynccontextmanager
async def migrated(revision: str = "head") -> AsyncIterator[tuple[Database, str]]:
    async with new_database() as url:
        # In a thread: the migration environment runs its own event loop.
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name, revision)
        database = Database(url)
        try:
            yield database, url
        finally:
            await database.dispose()


async def test_the_migration_backfills_totals_that_give_the_exact_metrics(postgres: None) -> None:
    async with migrated(BEFORE_TOTALS) as (database, url):
        await seed_with_todays_models(database, metadata, lambda: _seed_random(database, 1, customers=300))
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)

        await assert_same_as_exact(database, periods(START))
        backfilled = await _read_model(database)  # by the migration's own frozen copy of the computation
        await rebuild(database)
        assert backfilled[0] and await _read_model(database) == backfilled


async def test_totals_kept_event_by_event_give_the_exact_metrics(postgres: None) -> None:
    async with migrated() as (database, _):
        await apply_history(database, 4, customers=60)

        await assert_kept_totals_are_exact(database)


async def test_a_rebuild_in_chunks_with_an_event_between_them_gives_the_one_shot_rows(postgres: None) -> None:
    async with migrated() as (database, _):
        await chunked_rebuild_with_an_event(database)


async def test_one_read_of_a_refresh_gives_the_separate_reads_facts_and_rows(postgres: None) -> None:
    async with migrated() as (database, _):
        await assert_one_read_equals_the_separate_reads(database, 3)


async def test_a_refresh_leaves_the_rows_and_totals_of_a_full_rewrite(postgres: None) -> None:
    async with migrated() as (database, _):
        await assert_refresh_writes_what_a_full_rewrite_wrote(database, 4)


async def test_one_new_alert_rewrites_only_the_customer_s_rows_it_changes(postgres: None) -> None:
    async with migrated() as (database, _):
        await assert_one_new_alert_rewrites_only_the_rows_it_changes(database)


async def _now(watcher: AsyncConnection, query: str, pid: int) -> Any:
    """A view of another backend as it is now (pg_stat_activity is fixed within a transaction)."""
    found = (await watcher.execute(text(query), {"p": pid})).scalar_one_or_none()
    await watcher.rollback()
    return found


ADVISORY = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :p"


async def test_a_refresh_takes_its_customers_locks_only_once_it_holds_the_look_back_state(postgres: None) -> None:
    """The order of a rebuild chunk's locks (state, then customers), or the two could deadlock."""
    async with migrated() as (database, _):
        engine = database.engine
        async with engine.connect() as chunk, engine.connect() as refresh, engine.connect() as watcher:
            await chunk.execute(
                text("INSERT INTO metric_totals_state (id, lookback_seconds) VALUES (1, 86400) ON CONFLICT DO NOTHING")
            )
            await chunk.commit()
            lookback = (await chunk.execute(text("SELECT lookback_seconds FROM metric_totals_state"))).scalar_one()
            await chunk.execute(text("SELECT 1 FROM metric_totals_state WHERE id = 1 FOR UPDATE"))
            pid = (await refresh.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            locking = asyncio.create_task(refresh.run_sync(lambda c: reads.lock_with_lookback(c, ["c-2", "c-1"])))
            for _ in range(600):  # until the refresh waits on the state's row
                if await _now(watcher, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p", pid) == "Lock":
                    break
                await asyncio.sleep(0.05)

            assert await _now(watcher, ADVISORY, pid) == 0  # waiting for the state, it holds no customer's lock
            await chunk.commit()
            assert await locking == timedelta(seconds=lookback)
            assert await _now(watcher, ADVISORY, pid) == 2


async def test_a_refresh_on_a_store_never_built_creates_the_state_and_still_locks_its_customers(postgres: None) -> None:
    async with migrated() as (database, _), database.engine.connect() as conn:
        await conn.execute(text("DELETE FROM metric_totals_state"))
        await conn.commit()
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()

        await conn.run_sync(lambda c: read_model.refresh(c, ["c-1", "c-2"]))

        lookback = (await conn.execute(text("SELECT lookback_seconds FROM metric_totals_state"))).scalar_one()
        assert timedelta(seconds=lookback) == read_model.DEFAULT_LOOKBACK
        assert (await conn.execute(text(ADVISORY), {"p": pid})).scalar_one() == 2
