"""On PostgreSQL a job queued by another process (its own engine and connections) wakes the idle job loop
through NOTIFY at commit, so the loop may sleep long between looks; a rolled-back enqueue wakes nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from servicekit.db import Database
from servicekit.migrations import upgrade
from servicekit.wakeup import Wakeup
from services.scoring.main import SPEC
from services.scoring.training import service as training
from tests.e2e.conftest import new_database

HOUR_S = 3600.0  # the wait's fallback poll: only a notification can end it within the test


@asynccontextmanager
async def two_processes() -> AsyncIterator[tuple[Database, Database]]:
    """The job loop's database and an API process's: one migrated store, two engines."""
    async with new_database() as url:
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)
        loop_side, api_side = Database(url), Database(url)
        try:
            yield loop_side, api_side
        finally:
            await loop_side.dispose()
            await api_side.dispose()


async def test_a_job_queued_elsewhere_wakes_the_waiting_loop_at_commit(postgres: None) -> None:
    async with two_processes() as (loop_side, api_side):
        wakeup = Wakeup(loop_side, training.JOBS_CHANNEL)
        await wakeup.start()
        try:
            assert wakeup.listening
            await wakeup.wait(0.05)  # the look every (re)started LISTEN asks for
            waiting = asyncio.create_task(wakeup.wait(HOUR_S))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            async with api_side.transaction() as session:
                await training.enqueue_job(session=session, kind=training.VALUE_REFIT, request={})
            assert await asyncio.wait_for(waiting, 60)
        finally:
            await wakeup.stop()


async def test_a_rolled_back_enqueue_elsewhere_wakes_nobody(postgres: None) -> None:
    async with two_processes() as (loop_side, api_side):
        wakeup = Wakeup(loop_side, training.JOBS_CHANNEL)
        await wakeup.start()
        try:
            await wakeup.wait(0.05)
            with pytest.raises(RuntimeError):
                async with api_side.transaction() as session:
                    await training.enqueue_job(session=session, kind=training.VALUE_REFIT, request={})
                    raise RuntimeError("the request failed after queueing")
            assert not await wakeup.wait(1.0)
        finally:
            await wakeup.stop()
