"""Model versions and jobs: queueing a job, activating a version, the active models of a transaction,
and the reads of versions, jobs and the purchases a refit would use; never commits."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlmodel import col, select

from servicekit.problems import Problem, not_found
from servicekit.unit_of_work import UnitOfWork
from servicekit.wakeup import announce
from services.scoring.scores import features
from services.scoring.scores.models import CustomerFeatures, Purchase, PurchaseHistoryPublic
from services.scoring.scores.scorer import ActiveModels
from services.scoring.training.churn_model import TrainedChurnModel
from services.scoring.training.models import (
    ChurnModelVersion,
    Job,
    JobPublic,
    ModelVersionPublic,
    ModelVersionsPublic,
    ValueModelVersion,
)
from services.scoring.value.valuation import ValueModel

VALUE_REFIT, CHURN_TRAIN, RESCORE = "value_refit", "churn_train", "rescore"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
WORKER = f"{socket.gethostname()}:{os.getpid()}"
JOBS_CHANNEL = "scoring_jobs"  # a queued job's announcement: wakes the idle job loop (servicekit.wakeup)

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
    await announce(session, JOBS_CHANNEL)
    return job


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
    forget_active_models(uow)
    return row


async def deactivate_churn_model(*, uow: UnitOfWork) -> ChurnModelVersion | None:
    """No churn model active: churn risk is the rules' again. The version that was active, if one was."""
    session = uow.session
    row = (await session.execute(select(ChurnModelVersion).where(col(ChurnModelVersion.active)))).scalars().first()
    if row is None:
        return None
    await session.execute(update(ChurnModelVersion).values(active=False))
    await session.flush()
    forget_active_models(uow)
    return row


# ---- active models -------------------------------------------------------------------------------------


@dataclass
class ActiveModelsCache:
    """The active models as this transaction read them (once: a consumer batch shares them)."""

    models: ActiveModels | None = None


# Model id -> model, deserialised once per process: a version's parameters never change, only which
# version is active, so each transaction needs one query for the two active ids.
_CHURN_CACHE: dict[str, TrainedChurnModel] = {}
_VALUE_CACHE: dict[str, ValueModel] = {}


async def active_models(uow: UnitOfWork) -> ActiveModels:
    """The active value and churn models, read once per transaction (a consumer batch shares them)."""
    cache = uow.state(ActiveModelsCache)
    if cache.models is not None:
        return cache.models
    session = uow.session
    value_id, churn_id = (await session.execute(_active_ids())).one()
    value = None
    if value_id is not None:
        value = _VALUE_CACHE.get(value_id)
        if value is None:
            query = select(ValueModelVersion.params).where(ValueModelVersion.id == value_id)
            params = (await session.execute(query)).scalar_one()
            value = _VALUE_CACHE[value_id] = ValueModel.from_params(value_id, params)
    churn = None
    if churn_id is not None:
        churn = _CHURN_CACHE.get(churn_id)
        if churn is None:
            blob = (
                await session.execute(select(ChurnModelVersion.blob).where(ChurnModelVersion.id == churn_id))
            ).scalar_one()
            churn = _CHURN_CACHE[churn_id] = TrainedChurnModel.loads(blob)
    models = ActiveModels(value=value, churn_id=churn_id, churn=churn)
    cache.models = models
    return models


@cache  # built once per process: building it costs more than running it
def _active_ids() -> Any:
    return sa_select(
        select(ValueModelVersion.id).where(ValueModelVersion.active).limit(1).scalar_subquery(),
        select(ChurnModelVersion.id).where(ChurnModelVersion.active).limit(1).scalar_subquery(),
    )


def forget_active_models(uow: UnitOfWork) -> None:
    uow.forget(ActiveModelsCache)


# ---- model versions and jobs (reads) -----------------------------------------------------------------


def _version_public(row: ValueModelVersion | ChurnModelVersion) -> ModelVersionPublic:
    if isinstance(row, ValueModelVersion):
        return ModelVersionPublic(
            id=row.id,
            kind="value",
            active=row.active,
            fitted_at=features.utc(row.fitted_at),
            algorithm="bgnbd+gamma_gamma",
            params=row.params,
            metrics=row.metrics,
            n_customers=row.n_customers,
            calibration_end=row.calibration_end,
            job_id=row.job_id,
        )
    return ModelVersionPublic(
        id=row.id,
        kind="churn",
        active=row.active,
        fitted_at=features.utc(row.fitted_at),
        algorithm=row.algorithm,
        params=row.params,
        metrics=row.metrics,
        n_customers=row.n_samples,
        job_id=row.job_id,
    )


async def model_versions(*, session: AsyncSession, kind: str | None, limit: int, offset: int) -> ModelVersionsPublic:
    """Value and churn model versions, newest first."""
    rows: list[ValueModelVersion | ChurnModelVersion] = []
    if kind in (None, "value"):
        rows.extend((await session.execute(select(ValueModelVersion))).scalars())
    if kind in (None, "churn"):
        # The joblib blob stays in the database; the list needs only the metadata.
        query = select(ChurnModelVersion).options(defer(ChurnModelVersion.blob))  # type: ignore[arg-type]
        rows.extend((await session.execute(query)).scalars())
    rows.sort(key=lambda r: (features.utc(r.fitted_at), r.id), reverse=True)
    page = rows[offset : offset + limit]
    return ModelVersionsPublic(items=[_version_public(r) for r in page], total=len(rows), limit=limit, offset=offset)


def model_public(row: ValueModelVersion | ChurnModelVersion) -> ModelVersionPublic:
    return _version_public(row)


async def job_public(*, session: AsyncSession, job_id: str) -> JobPublic:
    job = await session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id, detail=f"No job {job_id}")
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        message=job.message,
        request=job.request,
        result=job.result,
        created_at=features.utc(job.created_at),
        started_at=None if job.started_at is None else features.utc(job.started_at),
        finished_at=None if job.finished_at is None else features.utc(job.finished_at),
    )


async def purchase_history(*, session: AsyncSession, segment: str | None) -> PurchaseHistoryPublic:
    query = select(
        func.count(func.distinct(Purchase.customer_id)),
        func.count(Purchase.interaction_id),
        func.min(Purchase.day),
        func.max(Purchase.day),
    )
    days = select(Purchase.customer_id, Purchase.day).distinct()
    if segment is not None:
        join = CustomerFeatures.customer_id == Purchase.customer_id
        query = query.join(CustomerFeatures, join).where(CustomerFeatures.segment == segment)
        days = days.join(CustomerFeatures, join).where(CustomerFeatures.segment == segment)
    customers, purchases, first, last = (await session.execute(query)).one()
    n_days = (await session.execute(select(func.count()).select_from(days.subquery()))).scalar_one()
    return PurchaseHistoryPublic(
        customers=customers, purchases=purchases, purchase_days=n_days, first_day=first, last_day=last
    )
