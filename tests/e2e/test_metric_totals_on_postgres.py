"""/retention/metrics' read model on PostgreSQL: the migration's backfill and the totals kept event by event
give the exact metrics (tests/unit/retention/test_metric_totals.py, on the real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from servicekit.db import Database
from servicekit.migrations import upgrade
from services.retention.main import SPEC
from tests.e2e.conftest import new_database
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
        await _seed_random(database, 1, customers=300)
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
