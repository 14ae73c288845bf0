"""Training jobs are bounded: one running job per kind, and a limit on how many of a kind may wait."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from servicekit.db import Database
from services.scoring import background
from services.scoring.training import service as training
from services.scoring.training.models import Job
from tests.unit.scoring.test_jobs import queue


async def test_a_second_job_of_a_kind_waits_while_one_runs_but_another_kind_starts(database: Database) -> None:
    first = await queue(database, training.CHURN_TRAIN, {})
    second = await queue(database, training.CHURN_TRAIN, {})
    refit = await queue(database, training.VALUE_REFIT, {})

    claimed = await background.claim_next(database)
    assert claimed is not None and claimed.id == first
    other = await background.claim_next(database)
    assert other is not None and other.id == refit  # the waiting churn job is skipped, not claimed
    assert await background.claim_next(database) is None
    async with database.sessions() as session:
        assert (await session.get(Job, second)).status == training.QUEUED  # type: ignore[union-attr]


async def test_the_database_refuses_a_second_running_job_of_a_kind_whatever_the_race(database: Database) -> None:
    await queue(database, training.CHURN_TRAIN, {})
    racing = await queue(database, training.CHURN_TRAIN, {})
    assert await background.claim_next(database) is not None
    # A worker that looked before the first claim committed still tries to start its candidate.
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await session.execute(
                update(Job).where(Job.id == racing).values(status=training.RUNNING, started_at=datetime.now(UTC))
            )
