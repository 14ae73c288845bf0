"""What the scoring service answers about scores: a customer's, its history, the ranked list, the summary."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from contracts.scoring import Factor
from servicekit.problems import Problem, not_found
from services.scoring.scores import features, summary
from services.scoring.scores.models import (
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
    ScoreSummaryPublic,
)


def _not_found(customer_id: str) -> Problem:
    return not_found(
        "customer",
        customer_id,
        title="Customer not scored",
        detail=f"No scores for customer {customer_id}",
        message=f"unknown customer {customer_id}",
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


async def known(session: AsyncSession, customer_id: str) -> CustomerFeatures:
    row = await session.get(CustomerFeatures, customer_id)
    if row is None or row.erased:
        raise _not_found(customer_id)
    return row


async def customer_scores(*, session: AsyncSession, customer_id: str) -> CustomerScoresPublic:
    row = await known(session, customer_id)
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
    await known(session, customer_id)
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


async def score_summary(*, session: AsyncSession, segment: str | None = None) -> ScoreSummaryPublic:
    """The pyramid (customers and value per tier), lifecycle funnel and churn-risk distribution over every
    customer's current score (erased customers left out), from ONE grouped scan: at most tiers x stages x
    risk buckets cells come back, folded by the pure summary module."""
    scores = CurrentScore.__table__  # type: ignore[attr-defined]
    features_table = CustomerFeatures.__table__  # type: ignore[attr-defined]
    # Buckets of width 1/RISK_BUCKETS, [low, high), the top one holding 1.0 (portable: no floor() in SQLite).
    width = 1 / summary.RISK_BUCKETS
    bucket = case(
        *((scores.c.churn_risk < (i + 1) * width, i) for i in range(summary.RISK_BUCKETS - 1)),
        else_=summary.RISK_BUCKETS - 1,
    )
    query = (
        sa_select(scores.c.value_tier, scores.c.lifecycle_stage, bucket, func.count(), func.sum(scores.c.clv))
        .select_from(scores.join(features_table, features_table.c.customer_id == scores.c.customer_id))
        .where(features_table.c.erased.is_(False))
        .group_by(scores.c.value_tier, scores.c.lifecycle_stage, bucket)
    )
    if segment is not None:
        query = query.where(features_table.c.segment == segment)
    cells = [
        (tier, stage, int(b), int(n), float(v) if v is not None else None)
        for tier, stage, b, n, v in (await session.execute(query)).all()
    ]
    tiers, stages, risk = summary.fold_cells(cells)
    return ScoreSummaryPublic.model_validate(
        {
            "customers": sum(n for _, n, _ in tiers),
            "tiers": summary.tier_shares(tiers),
            "stages": summary.stage_counts(stages),
            "risk": summary.risk_distribution(risk),
        }
    )
