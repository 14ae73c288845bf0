"""Scoring domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, case, delete, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlmodel import col, select

from servicekit import tracing
from servicekit.context import current_correlation_id
from servicekit.db import KEYS, chunks, for_each_key, on_postgres, update_at_commit
from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.events.contracts.scoring import Factor, ScoreValues
from servicekit.events.envelope import Received
from servicekit.inbox import batch_customer_ids
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from servicekit.unit_of_work import UnitOfWork
from services.scoring import features, summary, sweep, write_behind
from services.scoring.churn_model import TrainedChurnModel
from services.scoring.features import FeatureState
from services.scoring.models import (
    ChurnModelVersion,
    CurrentScore,
    CustomerFeatures,
    CustomerScoresPublic,
    FeatureSummary,
    Job,
    JobPublic,
    ModelVersionPublic,
    ModelVersionsPublic,
    Purchase,
    PurchaseHistoryPublic,
    RankedScore,
    RankedScoresPublic,
    ScoreFactors,
    ScoreHistoryItem,
    ScoreHistoryPublic,
    ScorePublic,
    ScoreRecord,
    ScoreSummaryPublic,
    TierChange,
    ValueModelVersion,
)
from services.scoring.rules import RuleWeights
from services.scoring.scorer import ActiveModels, Computed, compute_batch
from services.scoring.sweep import ChangeThresholds
from services.scoring.value import ValueModel

Change = Callable[[FeatureState], bool]


# ---- feature state -----------------------------------------------------------------------------------


@dataclass
class FeatureRows:
    """The features rows this transaction has read or made (a consumer batch's events build on each other)
    and the customer ids a preload found without one."""

    rows: dict[str, CustomerFeatures] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)


def new_features_row(customer_id: str) -> CustomerFeatures:
    # Every default-factory column given explicitly: SQLModel's own defaults cost more CPU per row than the
    # rest of the row (pydantic inspects each factory's signature on every construction).
    return CustomerFeatures(
        customer_id=customer_id,
        attributes={},
        recent_purchases=[],
        purchase_days={},
        recent_complaints=[],
        open_complaint_ids={},
        overdue_complaint_ids=[],
        closed_complaint_ids=[],
        seen_ids=[],
        updated_at=datetime.now(UTC),
    )


@cache
def _features_rows(postgres: bool) -> Any:
    return for_each_key(select(CustomerFeatures), col(CustomerFeatures.customer_id), postgres=postgres)


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Read the features rows of a consumer batch's customers in one query, instead of one per event.

    load_features then finds each row (or knows there is none yet) in the unit of work's FeatureRows.
    """
    session = uow.session
    cache = uow.state(FeatureRows)
    rows, absent = cache.rows, cache.absent
    ids = sorted(batch_customer_ids(events) - rows.keys() - absent)
    for chunk in chunks(ids):
        with session.no_autoflush:
            found = await session.execute(_features_rows(on_postgres(session)), {KEYS: list(chunk)})
        for row in found.scalars():
            rows[row.customer_id] = row
        absent.update(i for i in chunk if i not in rows)


async def load_features(*, uow: UnitOfWork, customer_id: str) -> tuple[CustomerFeatures, FeatureState]:
    """The customer's features row and state, created on first sight (events may beat customer.created).

    The row is remembered for the rest of the transaction, so several events for one customer in one
    consumer batch build on each other. Reads do not autoflush: the batch's changed and new rows are
    written together at commit instead of a few at a time before every read.
    """
    session = uow.session
    cache = uow.state(FeatureRows)
    rows = cache.rows
    row = rows.get(customer_id)
    if row is None:
        if customer_id not in cache.absent:
            with session.no_autoflush:
                row = await session.get(CustomerFeatures, customer_id)
        if row is None:
            row = new_features_row(customer_id)
            session.add(row)
        rows[customer_id] = row
    return row, features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})


def _store(session: AsyncSession, row: CustomerFeatures, state: FeatureState) -> None:
    """Put the state on the row; a stored row is written at commit with the batch's others, in one statement."""
    changed = {name: value for name, value in features.dump_state(state).items() if getattr(row, name) != value}
    update_at_commit(session, row, **changed, updated_at=datetime.now(UTC))


async def apply_event(
    *,
    uow: UnitOfWork,
    customer_id: str,
    change: Change,
    event_id: str,
    event_type: str,
    at: datetime,
    weights: RuleWeights,
    rescore: bool = True,
    profile_only: bool = False,
) -> bool:
    """Apply one event to the customer's features and, if it changed them, rescore.

    profile_only: the event changes the customer's profile, not its history (customer.*): it is
    scored as of the customer's latest event if it has one, so the order in which a profile and its
    history arrive does not change the scores; as of `at` otherwise.

    Returns whether it rescored: False when nothing was scored (a duplicate, an erased
    customer, or an event that does not feed the scores).
    """
    row, state = await load_features(uow=uow, customer_id=customer_id)
    if state.erased or not change(state):
        return False
    _store(uow.session, row, state)
    if not rescore:
        return False
    as_of = state.last_event_at if profile_only and state.last_event_at is not None else state.as_of(at)
    await rescore_customer(
        uow=uow,
        state=state,
        as_of=as_of,
        caused_by=event_id,
        caused_by_type=event_type,
        weights=weights,
    )
    return True


ERASURE_SUMMARY = (
    "Removed the customer's features (attributes among them), score history with its feature snapshots, "
    "tier history, current score and purchases; kept a tombstone so late events do not rebuild them."
)


async def erase_customer(*, uow: UnitOfWork, customer_id: str) -> None:
    """Forget the customer's features and score history; keep a tombstone against late events.

    The first time, confirms with erasure.confirmed in the same transaction (the tombstone makes a
    redelivery a no-op, so there is one receipt); without it the customer's erasure never completes."""
    session = uow.session
    write_behind.forget_customer(uow, customer_id)
    row, state = await load_features(uow=uow, customer_id=customer_id)
    first = features.customer_erased(state)
    if first:
        _store(session, row, state)
    await session.execute(delete(ScoreRecord).where(ScoreRecord.customer_id == customer_id))
    await session.execute(delete(CurrentScore).where(CurrentScore.customer_id == customer_id))
    await session.execute(delete(TierChange).where(TierChange.customer_id == customer_id))  # type: ignore[arg-type]
    await session.execute(delete(Purchase).where(Purchase.customer_id == customer_id))
    await session.flush()
    if first:
        await enqueue(
            session,
            ErasureConfirmed(
                customer_id=customer_id, service="scoring", erased_at=datetime.now(UTC), summary=ERASURE_SUMMARY
            ),
        )


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


# ---- scoring -----------------------------------------------------------------------------------------


async def rescore_customer(
    *,
    uow: UnitOfWork,
    state: FeatureState,
    as_of: datetime,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
    computed: Computed | None = None,
) -> None:
    """Queue a rescoring: at commit its scores are appended to the history, the current row replaced and
    score.updated enqueued, for the whole batch at once (write_behind). `computed`: already scored."""
    write_behind.add_rescore(
        uow,
        write_behind.Rescore(
            state=state,
            as_of=as_of,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            models=await active_models(uow),
            weights=weights,
            computed_at=datetime.now(UTC),
            correlation_id=current_correlation_id(),
            computed=computed,
            trace=tracing.current_context_headers(),
        ),
    )


def record_purchase(
    *, uow: UnitOfWork, interaction_id: str, customer_id: str, occurred_at: datetime, amount: float
) -> None:
    """Keep the purchase for refits; a second copy of the same interaction is ignored."""
    values = {
        "interaction_id": interaction_id,
        "customer_id": customer_id,
        "day": features.utc(occurred_at).date(),
        "amount": max(amount, 0.0),
    }
    write_behind.add_purchase(uow, values)


async def rescore_all(
    *,
    uow: UnitOfWork,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
    after: str = "",
    limit: int,
    now: datetime | None = None,
) -> tuple[str | None, int]:
    """Rescore up to `limit` customers with id > after (a model changed): (last id or None, how many).

    Each is scored as of `now` (the population's data clock: the latest event time held), never
    earlier than its own last event, so a customer who went quiet ages like everyone else."""
    forget_active_models(uow)
    rows = (
        (
            await uow.session.execute(
                select(CustomerFeatures)
                .where(CustomerFeatures.customer_id > after, CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
                .order_by(CustomerFeatures.customer_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        state = features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})
        # A customer known only by its profile (no events yet) is scored too, as of the data clock.
        last = state.last_event_at or now or datetime.now(UTC)
        await rescore_customer(
            uow=uow,
            state=state,
            as_of=max(last, now) if now is not None else last,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            weights=weights,
        )
    return (rows[-1].customer_id if rows else None), len(rows)


SWEEP_CAUSE = "scoring.sweep"  # caused_by_type of a score the silent-customer sweep published


async def rescore_silent(
    *,
    uow: UnitOfWork,
    clock: datetime,
    min_age: timedelta,
    thresholds: ChangeThresholds,
    weights: RuleWeights,
    after: str = "",
    limit: int,
) -> tuple[str | None, int, int]:
    """One batch of the silent-customer sweep, over customers with id > after.

    Each customer due (sweep.sweep_as_of) is scored at the clock; if a score moved enough against the
    last one published (sweep.meaningful_change) it is written and published like any rescoring, with
    lineage "sweep:<clock>". Every customer looked at is marked swept at that time, so the next pass
    skips it until it is due again: a pass repeated at the same clock changes nothing.
    Returns (last id read, or None when none is left; customers scored; scores published).

    The features rows are locked (PostgreSQL; SKIP LOCKED), so a customer whose event is being handled
    is left for the next pass rather than scored from features that event is changing.
    """
    cutoff = clock - min_age
    current = CurrentScore
    query = (
        select(
            CustomerFeatures,
            current.as_of,
            current.churn_risk,
            current.health,
            current.value_tier,
            current.lifecycle_stage,
            current.p_alive,
            current.clv,
            current.expected_purchases,
        )
        .outerjoin(current, current.customer_id == CustomerFeatures.customer_id)
        .where(CustomerFeatures.customer_id > after, CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
        .where(CustomerFeatures.last_event_at.is_not(None))  # type: ignore[union-attr]
        .where(or_(CustomerFeatures.status.is_(None), CustomerFeatures.status != "churned"))  # type: ignore[union-attr]
        # A pre-filter for sweep_as_of, which decides: nothing looked at since the cutoff.
        .where(or_(current.as_of.is_(None), current.as_of <= cutoff))  # type: ignore[union-attr]
        .where(or_(CustomerFeatures.swept_at.is_(None), CustomerFeatures.swept_at <= cutoff))  # type: ignore[union-attr]
        .order_by(CustomerFeatures.customer_id)
        .limit(limit)
        .with_for_update(of=CustomerFeatures, skip_locked=True)  # type: ignore[arg-type]
    )
    rows = (await uow.session.execute(query)).all()
    due: list[tuple[CustomerFeatures, FeatureState, datetime, ScoreValues | None]] = []
    for row in rows:
        features_row = row[0]
        state = features.load_state({name: getattr(features_row, name) for name in features.STATE_FIELDS})
        looked = [features.utc(t) for t in (row.as_of, features_row.swept_at) if t is not None]
        as_of = sweep.sweep_as_of(
            status=state.status,
            last_event_at=state.last_event_at,
            looked_at=max(looked, default=None),
            clock=clock,
            min_age=min_age,
        )
        if as_of is None:
            continue
        previous = None
        if row.churn_risk is not None:
            previous = ScoreValues(
                churn_risk=row.churn_risk,
                health=row.health,
                value_tier=row.value_tier,
                lifecycle_stage=row.lifecycle_stage,
                p_alive=row.p_alive,
                clv=row.clv,
                expected_purchases=row.expected_purchases,
            )
        due.append((features_row, state, as_of, previous))
    models = await active_models(uow)
    computed = compute_batch([(state, as_of) for _, state, as_of, _ in due], models, weights)
    published = 0
    for (features_row, state, as_of, previous), scores in zip(due, computed, strict=True):
        features_row.swept_at = as_of
        if sweep.meaningful_change(previous, scores.values(), thresholds):
            await rescore_customer(
                uow=uow,
                state=state,
                as_of=as_of,
                caused_by=f"sweep:{clock.isoformat()}",
                caused_by_type=SWEEP_CAUSE,
                weights=weights,
                computed=scores,
            )
            published += 1
    return (rows[-1][0].customer_id if rows else None), len(due), published


# ---- reads -------------------------------------------------------------------------------------------


def _not_found(customer_id: str) -> Problem:
    return Problem(
        404,
        "Customer not scored",
        f"No scores for customer {customer_id}",
        code="not_found",
        errors=[field_error("id", f"unknown customer {customer_id}")],
        customer_id=customer_id,
    )


def _score_public(row: ScoreRecord | CurrentScore) -> dict:
    return {
        "churn_risk": row.churn_risk,
        "health": row.health,
        "factors": ScoreFactors.model_validate(row.factors or {}),
        "model_version": row.model_version,
        "value_tier": row.value_tier,
        "lifecycle_stage": row.lifecycle_stage,
        "p_alive": row.p_alive,
        "expected_purchases": row.expected_purchases,
        "clv": row.clv,
        "value_at_risk": row.value_at_risk,
        "value_model_version": row.value_model_version,
        "caused_by": row.caused_by,
        "caused_by_type": row.caused_by_type,
        "as_of": features.utc(row.as_of),
        "computed_at": features.utc(row.computed_at),
    }


async def _known(session: AsyncSession, customer_id: str) -> CustomerFeatures:
    row = await session.get(CustomerFeatures, customer_id)
    if row is None or row.erased:
        raise _not_found(customer_id)
    return row


async def customer_scores(*, session: AsyncSession, customer_id: str) -> CustomerScoresPublic:
    row = await _known(session, customer_id)
    state = features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})
    current = await session.get(CurrentScore, customer_id)
    # Windows are read at the customer's own event clock, the same "now" the stored score used.
    as_of = state.last_event_at
    summary = features.summary(state, as_of or datetime.now(UTC))
    return CustomerScoresPublic(
        customer_id=customer_id,
        scores=None if current is None else ScorePublic(**_score_public(current)),
        features=FeatureSummary(**summary),
        features_as_of=as_of,
    )


async def score_history(*, session: AsyncSession, customer_id: str, limit: int, offset: int) -> ScoreHistoryPublic:
    await _known(session, customer_id)
    where = ScoreRecord.customer_id == customer_id
    count = (await session.execute(select(func.count()).select_from(ScoreRecord).where(where))).scalar_one()
    rows = (
        await session.execute(
            select(ScoreRecord).where(where).order_by(ScoreRecord.id.desc()).limit(limit).offset(offset)  # type: ignore[union-attr]
        )
    ).scalars()
    return ScoreHistoryPublic(
        customer_id=customer_id,
        items=[ScoreHistoryItem(id=r.id, **_score_public(r)) for r in rows],
        total=count,
        limit=limit,
        offset=offset,
    )


SORTS = ("risk", "value_at_risk")


async def ranked_scores(
    *,
    session: AsyncSession,
    limit: int,
    offset: int,
    min_risk: float | None = None,
    segment: str | None = None,
    status: str | None = None,
    tier: str | None = None,
    stage: str | None = None,
    sort: str = "risk",
) -> RankedScoresPublic:
    """Customers by churn risk or by value at risk (CLV x risk), highest first; ties by customer id so
    pages are stable. Customers without a CLV yet come last when sorting by value at risk."""
    query = select(CurrentScore, CustomerFeatures.segment, CustomerFeatures.status).join(
        CustomerFeatures, CustomerFeatures.customer_id == CurrentScore.customer_id
    )
    query = query.where(CustomerFeatures.erased.is_(False))  # type: ignore[union-attr, attr-defined]
    if min_risk is not None:
        query = query.where(CurrentScore.churn_risk >= min_risk)
    if segment is not None:
        query = query.where(CustomerFeatures.segment == segment)
    if status is not None:
        query = query.where(CustomerFeatures.status == status)
    if tier is not None:
        query = query.where(CurrentScore.value_tier == tier)
    if stage is not None:
        query = query.where(CurrentScore.lifecycle_stage == stage)
    count = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    if sort == "value_at_risk":
        order = [CurrentScore.value_at_risk.is_(None), CurrentScore.value_at_risk.desc()]  # type: ignore[union-attr]
    else:
        order = [CurrentScore.churn_risk.desc()]  # type: ignore[attr-defined]
    rows = (await session.execute(query.order_by(*order, CurrentScore.customer_id).limit(limit).offset(offset))).all()
    items = [
        RankedScore(
            customer_id=score.customer_id,
            churn_risk=score.churn_risk,
            health=score.health,
            value_tier=score.value_tier,
            lifecycle_stage=score.lifecycle_stage,
            p_alive=score.p_alive,
            clv=score.clv,
            value_at_risk=score.value_at_risk,
            segment=seg,
            status=st,
            top_factors=[Factor.model_validate(f) for f in (score.factors or {}).get("churn_risk", [])[:3]],
            model_version=score.model_version,
            computed_at=features.utc(score.computed_at),
        )
        for score, seg, st in rows
    ]
    return RankedScoresPublic(items=items, total=count, limit=limit, offset=offset)


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
        raise Problem(
            404, "Job not found", f"No job {job_id}", code="not_found", errors=[field_error("id", "unknown job")]
        )
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


async def score_summary(*, session: AsyncSession, segment: str | None = None) -> ScoreSummaryPublic:
    """The pyramid (customers and value per tier), lifecycle funnel and churn-risk distribution over every
    customer's current score (erased customers left out); aggregates only, computed in the database."""
    joined = sa_select(CurrentScore.__table__).join(  # type: ignore[attr-defined]
        CustomerFeatures.__table__,  # type: ignore[attr-defined]
        CustomerFeatures.customer_id == CurrentScore.customer_id,
    )
    joined = joined.where(CustomerFeatures.erased.is_(False))  # type: ignore[union-attr, attr-defined]
    if segment is not None:
        joined = joined.where(CustomerFeatures.segment == segment)
    scores = joined.subquery()
    tiers = (
        await session.execute(
            sa_select(scores.c.value_tier, func.count(), func.sum(scores.c.clv)).group_by(scores.c.value_tier)
        )
    ).all()
    stages = (
        await session.execute(sa_select(scores.c.lifecycle_stage, func.count()).group_by(scores.c.lifecycle_stage))
    ).all()
    width = 1 / summary.RISK_BUCKETS
    buckets = [
        func.sum(case((and_(scores.c.churn_risk >= i * width, scores.c.churn_risk < (i + 1) * width), 1), else_=0))
        if i < summary.RISK_BUCKETS - 1
        else func.sum(case((scores.c.churn_risk >= i * width, 1), else_=0))
        for i in range(summary.RISK_BUCKETS)
    ]
    risk_row = (await session.execute(sa_select(*buckets))).one()
    tier_rows = [(t, int(n), float(v) if v is not None else None) for t, n, v in tiers]
    return ScoreSummaryPublic.model_validate(
        {
            "customers": sum(n for _, n, _ in tier_rows),
            "tiers": summary.tier_shares(tier_rows),
            "stages": summary.stage_counts((s, int(n)) for s, n in stages),
            "risk": summary.risk_distribution({i: int(n or 0) for i, n in enumerate(risk_row)}),
        }
    )
