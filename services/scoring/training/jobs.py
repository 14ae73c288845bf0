"""The jobs themselves: a value-model refit, a churn-model training, and rescoring everyone after a
model change; services.scoring.background runs them."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores import features, service
from services.scoring.scores.models import CustomerFeatures, Purchase, ScoreRecord
from services.scoring.settings import ScoringSettings
from services.scoring.training import churn_model, labels
from services.scoring.training.models import ChurnModelVersion, Job, ValueModelVersion
from services.scoring.training.service import CHURN_TRAIN, RESCORE, VALUE_REFIT, Progress, activate_version, new_id
from services.scoring.value.valuation import fit_value_model

log = logging.getLogger("services.scoring.jobs")


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
    audience = labels.Audience(job.request.get("segment"), dict(job.request.get("attributes") or {}))
    async with database.sessions() as session:
        data = await labelled_set(session=session, cutoff=cutoff, audience=audience)
    ids, snapshots, labels_ = data.ids, data.snapshots, data.labels
    await progress(0.2, f"training on {len(ids)} customers ({sum(labels_)} churned)")
    algorithm = job.request.get("algorithm")  # None: chosen by the number of examples
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
                algorithm=trained.algorithm,
                params={
                    "cutoff": cutoff.isoformat(),
                    "folds": trained.metrics["folds"],
                    "audience": {"segment": audience.segment, "attributes": audience.attributes},
                },
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


async def labelled_set(
    *, session: AsyncSession, cutoff: datetime, audience: labels.Audience | None = None
) -> labels.TrainingSet:
    """Churned customers' last snapshot before their churn date, active customers' last before cutoff;
    a customer without one in time is an example by its attributes (labels.build). Only the audience's
    customers are used (its segment is also a condition on the history read)."""
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
            churned_at=features.utc(t) if t else None,
            profile=churn_model.profile_snapshot(segment, attributes or {}),
            segment=segment,
            attributes=attributes or {},
        )
        for c, s, t, segment, attributes in rows
    ]
    query = (
        select(ScoreRecord.customer_id, ScoreRecord.as_of, ScoreRecord.snapshot, ScoreRecord.caused_by_type)
        .join(CustomerFeatures, CustomerFeatures.customer_id == ScoreRecord.customer_id)
        .where(CustomerFeatures.status.in_(("churned", "active")))  # type: ignore[union-attr]
        .order_by(ScoreRecord.id)
    )
    if audience is not None and audience.segment is not None:
        query = query.where(CustomerFeatures.segment == audience.segment)
    history = (await session.execute(query)).all()
    snapshots = [labels.Snapshot(c, features.utc(t), snap, cause) for c, t, snap, cause in history]
    # Labelling walks every score record: off the event loop, which the API of this process shares.
    return await asyncio.to_thread(labels.build, customers, snapshots, cutoff, audience)


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
                now=None if clock is None else features.utc(clock),
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
