"""Scoring domain functions: they change state and enqueue events, and never commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from servicekit.events.contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.outbox import enqueue
from servicekit.problems import Problem, field_error
from services.scoring import features, rules
from services.scoring.features import FeatureState
from services.scoring.models import (
    CurrentScore,
    CustomerFeatures,
    CustomerScoresPublic,
    FeatureSummary,
    RankedScore,
    RankedScoresPublic,
    ScoreFactors,
    ScoreHistoryItem,
    ScoreHistoryPublic,
    ScorePublic,
    ScoreRecord,
)
from services.scoring.rules import RuleWeights

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
    for name, value in features.dump_state(state).items():
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
) -> ScoreRecord | None:
    """Apply one event to the customer's features and, if it changed them, rescore.

    Returns the new score history row, or None when nothing was scored (a duplicate, an erased
    customer, or an event that does not feed the scores).
    """
    row, state = await load_features(session=session, customer_id=customer_id)
    if state.erased or not change(state):
        return None
    _store(row, state)
    await session.flush()
    if not rescore:
        return None
    return await rescore_customer(
        session=session,
        state=state,
        as_of=state.as_of(at),
        caused_by=event_id,
        caused_by_type=event_type,
        weights=weights,
    )


async def erase_customer(*, session: AsyncSession, customer_id: str) -> None:
    """Forget the customer's features and score history; keep a tombstone against late events."""
    row, state = await load_features(session=session, customer_id=customer_id)
    if features.customer_erased(state):
        _store(row, state)
    await session.execute(delete(ScoreRecord).where(ScoreRecord.customer_id == customer_id))
    await session.execute(delete(CurrentScore).where(CurrentScore.customer_id == customer_id))
    await session.flush()


# ---- scoring -----------------------------------------------------------------------------------------


async def rescore_customer(
    *,
    session: AsyncSession,
    state: FeatureState,
    as_of: datetime,
    caused_by: str,
    caused_by_type: str,
    weights: RuleWeights,
) -> ScoreRecord:
    """Recompute the scores, append them to the history, update the current row, enqueue score.updated."""
    risk, churn_factors = rules.churn_risk(state, as_of, weights)
    health, health_factors = rules.health(state, risk, as_of, weights)
    version = rules.model_version(weights)
    computed_at = datetime.now(UTC)
    factors = {
        "churn_risk": [f.model_dump() for f in churn_factors],
        "health": [f.model_dump() for f in health_factors],
    }
    record = ScoreRecord(
        customer_id=state.customer_id,
        churn_risk=round(risk, 4),
        health=round(health, 1),
        factors=factors,
        model_version=version,
        caused_by=caused_by,
        caused_by_type=caused_by_type,
        as_of=as_of,
        computed_at=computed_at,
    )
    session.add(record)
    await session.flush()
    assert record.id is not None

    current = await session.get(CurrentScore, state.customer_id)
    previous = None if current is None else ScoreValues(churn_risk=current.churn_risk, health=current.health)
    if current is None:
        current = CurrentScore(
            customer_id=state.customer_id,
            churn_risk=record.churn_risk,
            health=record.health,
            factors=factors,
            model_version=version,
            score_id=record.id,
            caused_by=caused_by,
            caused_by_type=caused_by_type,
            as_of=as_of,
            computed_at=computed_at,
        )
        session.add(current)
    else:
        current.churn_risk, current.health, current.factors = record.churn_risk, record.health, factors
        current.model_version, current.score_id = version, record.id
        current.caused_by, current.caused_by_type = caused_by, caused_by_type
        current.as_of, current.computed_at = as_of, computed_at
    await session.flush()

    await enqueue(
        session,
        ScoreUpdated(
            customer_id=state.customer_id,
            previous=previous,
            current=ScoreValues(churn_risk=record.churn_risk, health=record.health),
            factors=churn_factors,
            model_version=version,
            caused_by=caused_by,
            computed_at=computed_at,
        ),
    )
    return record


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


async def ranked_scores(
    *,
    session: AsyncSession,
    limit: int,
    offset: int,
    min_risk: float | None = None,
    segment: str | None = None,
    status: str | None = None,
) -> RankedScoresPublic:
    """Customers by churn risk, highest first (ties by customer id so pages are stable)."""
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
    count = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        await session.execute(
            query.order_by(CurrentScore.churn_risk.desc(), CurrentScore.customer_id)  # type: ignore[attr-defined]
            .limit(limit)
            .offset(offset)
        )
    ).all()
    items = [
        RankedScore(
            customer_id=score.customer_id,
            churn_risk=score.churn_risk,
            health=score.health,
            segment=seg,
            status=st,
            top_factors=[Factor.model_validate(f) for f in (score.factors or {}).get("churn_risk", [])[:3]],
            model_version=score.model_version,
            computed_at=features.utc(score.computed_at),
        )
        for score, seg, st in rows
    ]
    return RankedScoresPublic(items=items, total=count, limit=limit, offset=offset)
