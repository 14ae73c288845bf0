"""Background work of the consume role: value-model refit, churn-model training and rescoring everyone
after a model change (jobs), and the periodic silent-customer sweep.

Robustness: a route only commits a `queued` job row; the consume role's job loop claims it with a
conditional UPDATE (so two workers never run the same job), runs it, and records progress with a
heartbeat. A job whose worker died (no heartbeat for `job_stale_after_s`) is marked failed by the
next loop that looks, which includes the restarted process. The CPU-heavy fits run in a thread, so the
event consumer in the same process keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from servicekit.background import every
from servicekit.db import Database
from servicekit.service import API
from servicekit.unit_of_work import UnitOfWork
from servicekit.wakeup import Wakeup, announce
from services.scoring.scores import features, service
from services.scoring.scores.models import CustomerFeatures, Purchase
from services.scoring.settings import ScoringSettings
from services.scoring.training.jobs import RUNNERS
from services.scoring.training.models import Job, ValueModelVersion
from services.scoring.training.service import (
    FAILED,
    JOBS_CHANNEL,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    VALUE_REFIT,
    WORKER,
    enqueue_job,
)

log = logging.getLogger("services.scoring.background")


# ---- the loop ---------------------------------------------------------------------------------------


async def run_jobs(app: FastAPI) -> None:
    """The consume role's job loop: fail stale jobs, claim and run queued ones, schedule refits.

    Idle, it waits for a job's announcement (enqueue_job, JOBS_CHANNEL) rather than looking every half
    second: each look costs three transactions. It looks anyway every job_idle_poll_s, and every
    job_poll_interval_s where an announcement may not reach it (SQLite with the api role in another process).
    """
    database: Database = app.state.database
    settings: ScoringSettings = app.state.settings
    wakeup = Wakeup(database, JOBS_CHANNEL)
    await wakeup.start()
    try:
        while True:
            try:
                await fail_stale(database, settings)
                job = await claim_next(database)
                if job is not None:
                    await run_job(database, settings, job)
                    continue
                await schedule_refit(database, settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job loop error")
            await wakeup.wait(idle_poll_s(settings, database, app.state.roles, listening=wakeup.listening))
    finally:
        await wakeup.stop()


def idle_poll_s(settings: ScoringSettings, database: Database, roles: Sequence[str], *, listening: bool) -> float:
    """How long the idle job loop may sleep: long where every enqueue wakes it (a LISTEN on PostgreSQL, or
    the api role in this very process), the short poll where a job could be queued unannounced."""
    announced = listening if database.is_postgres else API in roles
    return settings.job_idle_poll_s if announced else settings.job_poll_interval_s


async def fail_stale(database: Database, settings: ScoringSettings) -> int:
    limit = datetime.now(UTC) - timedelta(seconds=settings.job_stale_after_s)
    async with database.transaction() as session:
        result = await session.execute(
            update(Job)
            .where(Job.status == RUNNING, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < limit))  # type: ignore[union-attr, arg-type]
            .values(status=FAILED, finished_at=datetime.now(UTC), message="worker stopped (no heartbeat); run it again")
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def claim_next(database: Database) -> Job | None:
    """The oldest queued job of a kind with none running, now running here; None if there is none (or
    another worker won the race: the unique index uq_jobs_running_kind refuses a second running job)."""
    running = select(Job.kind).where(Job.status == RUNNING)
    try:
        async with database.transaction() as session:
            candidate = (
                await session.execute(
                    select(Job.id)
                    .where(Job.status == QUEUED, Job.kind.not_in(running))  # type: ignore[attr-defined]
                    .order_by(Job.created_at)
                    .limit(1)
                )
            ).scalar()
            if candidate is None:
                return None
            now = datetime.now(UTC)
            claimed = await session.execute(
                update(Job)
                .where(Job.id == candidate, Job.status == QUEUED)
                .values(status=RUNNING, worker=WORKER, started_at=now, heartbeat_at=now, message="started")
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None  # another worker took it
            return await session.get(Job, candidate)
    except IntegrityError:
        return None  # another worker started a job of this kind at the same moment


async def _update(database: Database, job_id: str, *, finished: bool = False, **values: Any) -> None:
    async with database.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=datetime.now(UTC), **values))
        if finished:  # a job of its kind that waited behind it may start now, in whichever worker
            await announce(session, JOBS_CHANNEL)


async def run_job(database: Database, settings: ScoringSettings, job: Job) -> None:
    async def progress(fraction: float, message: str) -> None:
        await _update(database, job.id, progress=round(fraction, 3), message=message)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(settings.job_heartbeat_s)
            await _update(database, job.id)

    beating = asyncio.create_task(heartbeat())
    try:
        runner = RUNNERS[job.kind]
        result = await runner(database, settings, job, progress)
    except Exception as exc:
        log.warning("job failed", extra={"job_id": job.id, "kind": job.kind, "error": repr(exc)})
        await _update(
            database, job.id, finished=True, status=FAILED, finished_at=datetime.now(UTC), message=str(exc)[:2000]
        )
        return
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    await _update(
        database,
        job.id,
        finished=True,
        status=SUCCEEDED,
        progress=1.0,
        finished_at=datetime.now(UTC),
        message="done",
        result=result,
    )
    log.info("job succeeded", extra={"job_id": job.id, "kind": job.kind})


async def schedule_refit(database: Database, settings: ScoringSettings) -> None:
    """Queue a value refit when the last one (fitted or requested) is older than the interval."""
    if settings.refit_interval_hours <= 0:
        return
    due = datetime.now(UTC) - timedelta(hours=settings.refit_interval_hours)
    async with database.transaction() as session:
        last_fit = (await session.execute(select(func.max(ValueModelVersion.fitted_at)))).scalar()
        last_job = (await session.execute(select(func.max(Job.created_at)).where(Job.kind == VALUE_REFIT))).scalar()
        latest = max((t for t in (last_fit, last_job) if t is not None), default=None)
        has_purchases = (await session.execute(select(Purchase.interaction_id).limit(1))).first() is not None
        if has_purchases and (latest is None or latest < due):
            await enqueue_job(session=session, kind=VALUE_REFIT, request={"scheduled": True, "rescore": True})


# ---- the silent-customer sweep ------------------------------------------------------------------------


async def sweep_silent_customers(app: FastAPI) -> None:
    """The consume role's sweep loop (services.scoring.scores.sweep): every `sweep_interval_s`, rescore the
    customers nothing has happened to. Only consume-role processes run it (ServiceSpec.background), so
    API replicas never do; several consume processes may, and SKIP LOCKED keeps them off each other's
    customers."""
    settings: ScoringSettings = app.state.settings
    if settings.sweep_interval_s <= 0:
        log.info("silent-customer sweep off (SCORING_SWEEP_INTERVAL_S=0)")
        return
    database: Database = app.state.database
    await every(settings.sweep_interval_s, "silent-sweep", lambda: sweep_once(database, settings), wait_first=True)


async def sweep_clock(database: Database, settings: ScoringSettings) -> datetime | None:
    """The sweep's "now": the latest event time held ("data", as the rescoring jobs use), or the wall clock."""
    if settings.sweep_clock == "wall":
        return datetime.now(UTC)
    async with database.sessions() as session:
        query = select(func.max(CustomerFeatures.last_event_at)).where(CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
        latest = (await session.execute(query)).scalar()
    return None if latest is None else features.utc(latest)


async def sweep_once(database: Database, settings: ScoringSettings, *, clock: datetime | None = None) -> dict[str, Any]:
    """One pass over every customer, one batch per transaction; progress logged per batch.

    Idempotent: a customer scored (or looked at) at this clock is not due again until the clock has
    moved on by sweep_min_age_hours, so a pass repeated, or resumed after a crash, redoes nothing."""
    clock = clock or await sweep_clock(database, settings)
    result: dict[str, Any] = {"clock": None if clock is None else clock.isoformat(), "scored": 0, "published": 0}
    if clock is None:
        return result  # no customer with events yet
    started = time.monotonic()
    log.info("silent-customer sweep started", extra={"clock": result["clock"]})
    after = ""
    while True:
        async with database.transaction() as session:
            last, scored, published = await service.rescore_silent(
                uow=UnitOfWork(session),
                clock=clock,
                min_age=timedelta(hours=settings.sweep_min_age_hours),
                thresholds=settings.sweep_min_change,
                weights=settings.weights,
                after=after,
                limit=settings.sweep_batch,
            )
        if last is None:
            break
        after = last
        result["scored"] += scored
        result["published"] += published
        if scored:
            log.info("silent-customer sweep progress", extra={"through": after, **result})
    result["seconds"] = round(time.monotonic() - started, 3)
    log.info("silent-customer sweep done", extra=result)
    return result
