"""The idle job loop sleeps long and is woken by a queued job: an idle scoring service does not look for jobs
twice a second (three transactions each), and a job still starts as soon as it is queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from servicekit.db import Database
from servicekit.service import API, CONSUME, create_app
from servicekit.wakeup import Wakeup
from services.scoring import background
from services.scoring.main import SPEC, metadata
from services.scoring.settings import ScoringSettings
from services.scoring.training import jobs
from services.scoring.training import service as training
from services.scoring.training.models import Job

LONG_S = 3600.0  # both polls: only an announcement can wake the loop within a test


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = ScoringSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}", job_poll_interval_s=LONG_S, job_idle_poll_s=LONG_S
    )
    app = create_app(SPEC, settings, roles=(API, CONSUME))
    database: Database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield app
    await database.dispose()


async def _status(database: Database, job_id: str) -> str:
    async with database.sessions() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job.status


async def _until(check: Any, tries: int = 2000) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached")


async def test_a_job_queued_while_the_loop_sleeps_is_run_without_waiting_for_a_poll(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    database: Database = app.state.database
    looks = 0
    real_claim = background.claim_next

    async def counting_claim(db: Database) -> Job | None:
        nonlocal looks
        looks += 1
        return await real_claim(db)

    async def quick_refit(*_args: Any) -> dict[str, Any]:
        return {"ran": True}

    monkeypatch.setattr(background, "claim_next", counting_claim)
    monkeypatch.setitem(jobs.RUNNERS, training.VALUE_REFIT, quick_refit)
    loop = asyncio.create_task(background.run_jobs(app))
    try:
        await _until(lambda: asyncio.sleep(0, looks >= 1))
        await asyncio.sleep(0.3)
        assert looks == 1  # idle: asleep, not polling

        async with database.transaction() as session:
            job = await training.enqueue_job(session=session, kind=training.VALUE_REFIT, request={})

        await _until(lambda: _status_is(database, job.id, training.SUCCEEDED))
        await asyncio.sleep(0.3)
        settled = looks
        await asyncio.sleep(0.3)
        # Woken once by the enqueue (the look that ran it), then the look after a job and the one the job's
        # own finish announced found the queue empty; asleep again, as no poll is due within the hour.
        assert looks == settled == 4
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


async def _status_is(database: Database, job_id: str, status: str) -> bool:
    return await _status(database, job_id) == status


async def test_a_queue_announcement_made_while_the_loop_works_is_not_slept_through(app: FastAPI) -> None:
    database: Database = app.state.database
    wakeup = Wakeup(database, training.JOBS_CHANNEL)
    await wakeup.start()
    try:
        async with database.transaction() as session:  # committed before the loop waits
            await training.enqueue_job(session=session, kind=training.VALUE_REFIT, request={})
        assert await wakeup.wait(LONG_S)
        assert not await wakeup.wait(0.05)  # spent: the next wait sleeps until the next announcement
    finally:
        await wakeup.stop()


async def test_a_rolled_back_enqueue_wakes_nobody(app: FastAPI) -> None:
    database: Database = app.state.database
    wakeup = Wakeup(database, training.JOBS_CHANNEL)
    await wakeup.start()
    try:
        with pytest.raises(RuntimeError):
            async with database.transaction() as session:
                await training.enqueue_job(session=session, kind=training.VALUE_REFIT, request={})
                raise RuntimeError("the request failed after queueing")
        assert not await wakeup.wait(0.05)
    finally:
        await wakeup.stop()


@pytest.mark.parametrize(
    ("postgres", "roles", "listening", "expected"),
    [
        (True, (CONSUME,), True, "idle"),  # LISTEN hears enqueues from every process
        (True, (CONSUME,), False, "poll"),  # LISTEN down: a notification may be lost
        (False, (API, CONSUME), False, "idle"),  # SQLite: enqueues in this process wake it
        (False, (CONSUME,), False, "poll"),  # SQLite, api elsewhere: nothing can wake it
    ],
)
def test_the_loop_sleeps_long_only_where_every_enqueue_can_wake_it(
    postgres: bool, roles: tuple[str, ...], listening: bool, expected: str
) -> None:
    settings = ScoringSettings(job_poll_interval_s=0.5, job_idle_poll_s=30.0)

    class FakeDatabase:
        is_postgres = postgres

    waited = background.idle_poll_s(settings, FakeDatabase(), roles, listening=listening)  # type: ignore[arg-type]
    assert waited == {"idle": 30.0, "poll": 0.5}[expected]
