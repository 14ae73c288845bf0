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
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from servicekit.background import every
from servicekit.db import Database
from servicekit.problems import Problem
from servicekit.unit_of_work import UnitOfWork
from services.scoring import churn_model, labels, service
from services.scoring.models import (
    ChurnModelVersion,
    CustomerFeatures,
    Job,
    Purchase,
    ScoreRecord,
    ValueModelVersion,
)
from services.scoring.settings import ScoringSettings
from services.scoring.value import fit_value_model

log = logging.getLogger("services.scoring.jobs")

VALUE_REFIT, CHURN_TRAIN, RESCORE = "value_refit", "churn_train", "rescore"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
WORKER = f"{socket.gethostname()}:{os.getpid()}"

Progress = Callable[[float, str], Awaitable[None]]


def new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"


async def enqueue_job(
    *, session: AsyncSession, kind: str, request: dict[str, Any], queue_limit: int | None = None
) -> Job:
    """Add a queued job (the caller commits; the job loop picks it up after that).

    ``queue_limit``: refuse (429) when that many jobs of the kind already wait, so a caller cannot pile up
    CPU-heavy fits; concurrent requests may pass the count together, which overshoots by at most their number.
    """
    if queue_limit is not None:
        waiting = (
            await session.execute(select(func.count()).select_from(Job).where(Job.kind == kind, Job.status == QUEUED))
        ).scalar_one()
        if waiting >= queue_limit:
            raise Problem(
                429,
                "Too many queued jobs",
                f"{waiting} {kind} job(s) are already waiting; poll them (GET /jobs/{{id}}) and try again later.",
                code="job_queue_full",
                headers={"Retry-After": "60"},
                kind=kind,
                queued=waiting,
                limit=queue_limit,
            )
    job = Job(id=new_id("job"), kind=kind, request=request, message="queued")
    session.add(job)
    await session.flush()
    return job


# ---- the loop ---------------------------------------------------------------------------------------


async def run_jobs(app: FastAPI) -> None:
    """The consume role's job loop: fail stale jobs, claim and run queued ones, schedule refits."""
    database: Database = app.state.database
    settings: ScoringSettings = app.state.settings
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
        await asyncio.sleep(settings.job_poll_interval_s)


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


async def _update(database: Database, job_id: str, **values: Any) -> None:
    async with database.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=datetime.now(UTC), **values))


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
        await _update(database, job.id, status=FAILED, finished_at=datetime.now(UTC), message=str(exc)[:2000])
        return
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    await _update(
        database, job.id, status=SUCCEEDED, progress=1.0, finished_at=datetime.now(UTC), message="done", result=result
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


# ---- the jobs ---------------------------------------------------------------------------------------


async def value_refit(database: Database, settings: ScoringSettings, job: Job, progress: Progress) -> dict[str, Any]:
    await progress(0.05, "reading purchases")
    async with database.sessions() as session:
        rows = (await session.execute(purchase_days_query(job.request.get("segment")))).all()
    # Off the event loop like the fit itself: the API shares this process's loop.
    history = await asyncio.to_thread(purchase_days, rows)
    if not history:
        raise ValueError("no purchases to fit")
    requested = job.request.get("calibration_end")
    calibration_end = date.fromisoformat(requested) if requested else max(d for h in history.values() for d in h)

    await progress(0.2, f"fitting BG/NBD and Gamma-Gamma on {len(history)} customers")
    model_id = new_id("value")
    model, metrics, n = await asyncio.to_thread(
        fit_value_model,
        history,
        calibration_end,
        model_id=model_id,
        clv_settings=settings.clv(),
        tier_shares=settings.tier_shares,
    )
    async with database.transaction() as session:
        session.add(
            ValueModelVersion(
                id=model_id,
                params=model.params_json(),
                metrics=metrics,
                n_customers=n,
                calibration_end=calibration_end,
                job_id=job.id,
            )
        )
        await session.flush()
        await activate_version(uow=UnitOfWork(session), model_id=model_id)
    result: dict[str, Any] = {
        "model_id": model_id,
        "calibration_end": calibration_end.isoformat(),
        **model.params_json(),
    }
    result["metrics"] = metrics
    if job.request.get("rescore", True):
        segment = job.request.get("segment")
        result["rescored"] = await _rescore_everyone(database, settings, job, progress, start=0.6, segment=segment)
    return result


def purchase_days(rows: list[Any]) -> dict[str, dict[date, float]]:
    """Pure: spend per customer and purchase day from (customer_id, day, amount) rows."""
    history: dict[str, dict[date, float]] = defaultdict(dict)
    for customer_id, day, amount in rows:
        history[customer_id][day if isinstance(day, date) else date.fromisoformat(str(day))] = float(amount or 0)
    return dict(history)


def purchase_days_query(segment: str | None) -> Any:
    """Spend per customer and purchase day (several purchases on one day are one), optionally of one segment."""
    query = select(Purchase.customer_id, Purchase.day, func.sum(Purchase.amount)).group_by(
        Purchase.customer_id, Purchase.day
    )
    if segment is not None:
        query = query.join(CustomerFeatures, CustomerFeatures.customer_id == Purchase.customer_id).where(
            CustomerFeatures.segment == segment
        )
    return query


async def churn_train(database: Database, settings: ScoringSettings, job: Job, progress: Progress) -> dict[str, Any]:
    await progress(0.05, "reading labelled customers and feature snapshots")
    requested = job.request.get("cutoff")
    cutoff = datetime.fromisoformat(requested) if requested else datetime.now(UTC)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    async with database.sessions() as session:
        data = await labelled_set(session=session, cutoff=cutoff)
    ids, snapshots, labels_ = data.ids, data.snapshots, data.labels
    await progress(0.2, f"training on {len(ids)} customers ({sum(labels_)} churned)")
    algorithm = job.request.get("algorithm", "logistic")
    try:
        trained = await asyncio.to_thread(
            churn_model.train, snapshots, labels_, algorithm=algorithm, folds=int(job.request.get("folds", 5))
        )
    except ValueError as exc:
        raise ValueError(f"{exc}; training data: {data.report()}") from exc
    model_id = new_id("churn")
    async with database.transaction() as session:
        session.add(
            ChurnModelVersion(
                id=model_id,
                algorithm=algorithm,
                params={"cutoff": cutoff.isoformat(), "folds": trained.metrics["folds"]},
                metrics={**trained.metrics, "data": data.report()},
                n_samples=len(ids),
                n_churned=sum(labels_),
                blob=trained.dumps(),
                job_id=job.id,
            )
        )
        await session.flush()
        if job.request.get("activate", True):
            await activate_version(uow=UnitOfWork(session), model_id=model_id)
    result: dict[str, Any] = {"model_id": model_id, "activated": bool(job.request.get("activate", True))}
    result["metrics"] = trained.metrics
    result["data"] = data.report()
    if result["activated"]:
        result["rescored"] = await _rescore_everyone(database, settings, job, progress, start=0.7)
    return result


async def training_data(
    *, session: AsyncSession, cutoff: datetime
) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """(ids, snapshots, labels) of labelled_set."""
    data = await labelled_set(session=session, cutoff=cutoff)
    return data.ids, data.snapshots, data.labels


async def labelled_set(*, session: AsyncSession, cutoff: datetime) -> labels.TrainingSet:
    """Churned customers' last snapshot before their churn date, active customers' last before cutoff;
    a customer without one in time is an example by its attributes (labels.build)."""
    rows = (
        await session.execute(
            select(
                CustomerFeatures.customer_id,
                CustomerFeatures.status,
                CustomerFeatures.churned_at,
                CustomerFeatures.segment,
                CustomerFeatures.attributes,
            ).where(CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
        )
    ).all()
    customers = [
        labels.Customer(
            customer_id=c,
            status=s,
            churned_at=service.features.utc(t) if t else None,
            profile=churn_model.profile_snapshot(segment, attributes or {}),
        )
        for c, s, t, segment, attributes in rows
    ]
    history = (
        await session.execute(
            select(ScoreRecord.customer_id, ScoreRecord.as_of, ScoreRecord.snapshot, ScoreRecord.caused_by_type)
            .join(CustomerFeatures, CustomerFeatures.customer_id == ScoreRecord.customer_id)
            .where(CustomerFeatures.status.in_(("churned", "active")))  # type: ignore[union-attr]
            .order_by(ScoreRecord.id)
        )
    ).all()
    snapshots = [labels.Snapshot(c, service.features.utc(t), snap, cause) for c, t, snap, cause in history]
    # Labelling walks every score record: off the event loop, which the API of this process shares.
    return await asyncio.to_thread(labels.build, customers, snapshots, cutoff)


async def rescore(database: Database, settings: ScoringSettings, job: Job, progress: Progress) -> dict[str, Any]:
    return {"rescored": await _rescore_everyone(database, settings, job, progress, start=0.0)}


async def _rescore_everyone(
    database: Database,
    settings: ScoringSettings,
    job: Job,
    progress: Progress,
    *,
    start: float,
    segment: str | None = None,
) -> int:
    """Apply the active models to every customer, one chunk per transaction; each rescoring is a
    score.updated caused by this job (lineage: "model changed")."""
    async with database.sessions() as session:
        total = (await session.execute(select(func.count()).select_from(CustomerFeatures))).scalar_one()
        # The data clock: the latest event time held (of the segment a refit was fitted on).
        latest = select(func.max(CustomerFeatures.last_event_at))
        if segment is not None:
            latest = latest.where(CustomerFeatures.segment == segment)
        clock = (await session.execute(latest)).scalar()
    done, after = 0, ""
    while True:
        async with database.transaction() as session:
            last, n = await service.rescore_all(
                uow=UnitOfWork(session),
                caused_by=f"job:{job.id}",
                caused_by_type=f"job.{job.kind}",
                weights=settings.weights,
                after=after,
                limit=settings.rescore_chunk,
                now=None if clock is None else service.features.utc(clock),
            )
        if last is None:
            return done
        after = last
        done += n
        await progress(start + (1 - start) * min(done / max(total, 1), 0.99), f"rescoring customers ({after})")


RUNNERS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    VALUE_REFIT: value_refit,
    CHURN_TRAIN: churn_train,
    RESCORE: rescore,
}


# ---- the silent-customer sweep ------------------------------------------------------------------------


async def sweep_silent_customers(app: FastAPI) -> None:
    """The consume role's sweep loop (services.scoring.sweep): every `sweep_interval_s`, rescore the
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
    return None if latest is None else service.features.utc(latest)


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


# ---- model versions -----------------------------------------------------------------------------------


async def activate_version(*, uow: UnitOfWork, model_id: str) -> ValueModelVersion | ChurnModelVersion:
    """Make one version the active one of its kind (value or churn); the others become inactive."""
    session = uow.session
    table: type[ValueModelVersion] | type[ChurnModelVersion]
    table = ValueModelVersion if model_id.startswith("value-") else ChurnModelVersion
    row = await session.get(table, model_id)
    if row is None:
        raise LookupError(model_id)
    await session.execute(update(table).where(table.id != model_id).values(active=False))  # type: ignore[arg-type]
    row.active = True
    await session.flush()
    service.forget_active_models(uow)
    return row
