"""Scoring domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlmodel import select

from servicekit.events.contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.problems import Problem, field_error
from services.scoring import churn_model, features, rules, write_behind
from services.scoring import value as valuation
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
    ValueModelVersion,
)
from services.scoring.rules import RuleWeights
from services.scoring.value import CustomerValue, ValueModel

Change = Callable[[FeatureState], bool]


# ---- feature state -----------------------------------------------------------------------------------


async def load_features(*, session: AsyncSession, customer_id: str) -> tuple[CustomerFeatures, FeatureState]:
    """The customer's features row and state, created on first sight (events may beat customer.created).

    session.get returns the same object for the rest of the transaction, so several events for one
    customer in one consumer batch build on each other.
    """
    row = await session.get(CustomerFeatures, customer_id)
    if row is None:
        row = CustomerFeatures(customer_id=customer_id)
        session.add(row)
        await session.flush()
    return row, features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})


def _store(row: CustomerFeatures, state: FeatureState) -> None:
    # Only what changed: every attribute set on a SQLModel row costs validation and dirty tracking.
    for name, value in features.dump_state(state).items():
        if getattr(row, name) != value:
            setattr(row, name, value)
    row.updated_at = datetime.now(UTC)


async def apply_event(
    *,
    session: AsyncSession,
    customer_id: str,
    change: Change,
    event_id: str,
    event_type: str,
    at: datetime,
    weights: RuleWeights,
    rescore: bool = True,
) -> bool:
    """Apply one event to the customer's features and, if it changed them, rescore.

    Returns whether it rescored: False when nothing was scored (a duplicate, an erased
    customer, or an event that does not feed the scores).
    """
    row, state = await load_features(session=session, customer_id=customer_id)
    if state.erased or not change(state):
        return False
    _store(row, state)  # flushed at commit, with the rest of the batch
    if not rescore:
        return False
    await rescore_customer(
        session=session,
        state=state,
        as_of=state.as_of(at),
        caused_by=event_id,
        caused_by_type=event_type,
        weights=weights,
    )
    return True


async def erase_customer(*, session: AsyncSession, customer_id: str) -> None:
    """Forget the customer's features and score history; keep a tombstone against late events."""
    write_behind.forget_customer(session, customer_id)
    row, state = await load_features(session=session, customer_id=customer_id)
    if features.customer_erased(state):
        _store(row, state)
    await session.execute(delete(ScoreRecord).where(ScoreRecord.customer_id == customer_id))
    await session.execute(delete(CurrentScore).where(CurrentScore.customer_id == customer_id))
    session.info.get(CURRENT_VALUES, {}).pop(customer_id, None)
    await session.execute(delete(Purchase).where(Purchase.customer_id == customer_id))
    await session.flush()


# ---- active models -------------------------------------------------------------------------------------

ACTIVE_MODELS = "scoring.active_models"
_CHURN_CACHE: dict[str, TrainedChurnModel] = {}  # model id -> deserialised model (versions are immutable)


@dataclass(frozen=True)
class ActiveModels:
    value: ValueModel | None
    churn_id: str | None
    churn: TrainedChurnModel | None


async def active_models(session: AsyncSession) -> ActiveModels:
    """The active value and churn models, read once per transaction (a consumer batch shares them)."""
    cached = session.info.get(ACTIVE_MODELS)
    if cached is not None:
        return cached
    value_row = (
        await session.execute(select(ValueModelVersion.id, ValueModelVersion.params).where(ValueModelVersion.active))
    ).first()
    churn_id = (await session.execute(select(ChurnModelVersion.id).where(ChurnModelVersion.active))).scalar()
    churn = None
    if churn_id is not None:
        churn = _CHURN_CACHE.get(churn_id)
        if churn is None:
            blob = (
                await session.execute(select(ChurnModelVersion.blob).where(ChurnModelVersion.id == churn_id))
            ).scalar_one()
            churn = _CHURN_CACHE[churn_id] = TrainedChurnModel.loads(blob)
    models = ActiveModels(
        value=None if value_row is None else ValueModel.from_params(value_row[0], value_row[1]),
        churn_id=churn_id,
        churn=churn,
    )
    session.info[ACTIVE_MODELS] = models
    return models


def forget_active_models(session: AsyncSession) -> None:
    session.info.pop(ACTIVE_MODELS, None)


# ---- scoring -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Computed:
    churn_risk: float
    health: float
    factors: dict[str, Any]
    churn_factors: list[Factor]
    model_version: str
    value: CustomerValue | None
    value_model_version: str | None
    lifecycle_stage: str
    snapshot: dict[str, Any]

    def values(self) -> ScoreValues:
        v = self.value
        return ScoreValues(
            churn_risk=self.churn_risk,
            health=self.health,
            value_tier=None if v is None else v.tier,
            lifecycle_stage=self.lifecycle_stage,
            p_alive=None if v is None else round(v.p_alive, 4),
            clv=None if v is None else round(v.clv, 2),
            expected_purchases=None if v is None else round(v.expected_purchases, 4),
        )


def compute_scores(state: FeatureState, as_of: datetime, models: ActiveModels, weights: RuleWeights) -> Computed:
    """Every score of one customer at `as_of`. Pure given the models: no I/O."""
    snap = churn_model.snapshot(state, as_of)
    if models.churn is not None and models.churn_id is not None:
        risk, churn_factors = models.churn.risk_and_factors(snap)
        version = models.churn_id
    else:
        risk, churn_factors = rules.churn_risk(state, as_of, weights)
        version = rules.model_version(weights)
    health, health_factors = rules.health(state, risk, as_of, weights)
    customer_value = None if models.value is None else valuation.customer_value(state, as_of, models.value)
    stage = valuation.lifecycle_stage(state, as_of, None if customer_value is None else customer_value.p_alive)
    return Computed(
        churn_risk=round(risk, 4),
        health=round(health, 1),
        factors={
            "churn_risk": [f.model_dump() for f in churn_factors],
            "health": [f.model_dump() for f in health_factors],
        },
        churn_factors=churn_factors,
        model_version=version,
        value=customer_value,
        value_model_version=None if models.value is None or customer_value is None else models.value.id,
        lifecycle_stage=stage,
        snapshot=snap,
    )


def _value_columns(c: Computed) -> dict[str, Any]:
    v = c.value
    return {
        "value_tier": None if v is None else v.tier,
        "lifecycle_stage": c.lifecycle_stage,
        "p_alive": None if v is None else round(v.p_alive, 4),
        "expected_purchases": None if v is None else round(v.expected_purchases, 4),
        "clv": None if v is None else round(v.clv, 2),
        "value_at_risk": None if v is None else round(v.clv * c.churn_risk, 2),
        "value_model_version": c.value_model_version,
    }


CURRENT_VALUES = "scoring.current_values"


async def _previous_values(session: AsyncSession, customer_id: str) -> ScoreValues | None:
    """The customer's current values before this rescoring; remembered per transaction, so a batch
    reads each customer's current row at most once."""
    cache: dict[str, ScoreValues | None] = session.info.setdefault(CURRENT_VALUES, {})
    if customer_id in cache:
        return cache[customer_id]
    t = CurrentScore.__table__  # type: ignore[attr-defined]
    row = (
        await session.execute(
            sa_select(
                t.c.churn_risk,
                t.c.health,
                t.c.value_tier,
                t.c.lifecycle_stage,
                t.c.p_alive,
                t.c.clv,
                t.c.expected_purchases,
            ).where(t.c.customer_id == customer_id)
        )
    ).first()
    values = None if row is None else ScoreValues(**row._asdict())
    cache[customer_id] = values
    return values


async def rescore_customer(
    *,
    session: AsyncSession,
    state: FeatureState,
    as_of: datetime,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
) -> None:
    """Recompute the scores, append them to the history, replace the current row, enqueue score.updated.

    The rows are written just before the transaction commits (write_behind), a consumer batch at once."""
    computed = compute_scores(state, as_of, await active_models(session), weights)
    computed_at = datetime.now(UTC)
    row: dict[str, Any] = {
        "customer_id": state.customer_id,
        "churn_risk": computed.churn_risk,
        "health": computed.health,
        "factors": computed.factors,
        "model_version": computed.model_version,
        "caused_by": caused_by,
        "caused_by_type": caused_by_type,
        "as_of": as_of,
        "computed_at": computed_at,
        **_value_columns(computed),
    }
    previous = await _previous_values(session, state.customer_id)
    current = computed.values()
    write_behind.add_score(session, {**row, "snapshot": _jsonable(computed.snapshot)})
    session.info[CURRENT_VALUES][state.customer_id] = current
    write_behind.add_event(
        session,
        ScoreUpdated(
            customer_id=state.customer_id,
            previous=previous,
            current=current,
            factors=computed.churn_factors,
            model_version=computed.model_version,
            caused_by=caused_by,
            computed_at=computed_at,
        ),
    )


def _jsonable(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in snapshot.items()}


def record_purchase(
    *, session: AsyncSession, interaction_id: str, customer_id: str, occurred_at: datetime, amount: float
) -> None:
    """Keep the purchase for refits; a second copy of the same interaction is ignored."""
    values = {
        "interaction_id": interaction_id,
        "customer_id": customer_id,
        "day": features.utc(occurred_at).date(),
        "amount": max(amount, 0.0),
    }
    write_behind.add_purchase(session, values)


async def rescore_all(
    *,
    session: AsyncSession,
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
    forget_active_models(session)
    rows = (
        (
            await session.execute(
                select(CustomerFeatures)
                .where(CustomerFeatures.customer_id > after, CustomerFeatures.erased.is_(False))  # type: ignore[attr-defined]
                .where(CustomerFeatures.last_event_at.is_not(None))  # type: ignore[union-attr]
                .order_by(CustomerFeatures.customer_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        state = features.load_state({name: getattr(row, name) for name in features.STATE_FIELDS})
        assert state.last_event_at is not None
        await rescore_customer(
            session=session,
            state=state,
            as_of=max(state.last_event_at, now) if now is not None else state.last_event_at,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            weights=weights,
        )
    return (rows[-1].customer_id if rows else None), len(rows)


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
