"""What the scoring service answers about scores: a customer's, its history, the ranked list, the summary."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, case, func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from servicekit.events.contracts.scoring import Factor
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
