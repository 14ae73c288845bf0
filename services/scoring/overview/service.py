"""The pyramid, funnel and risk distribution (GET /scores/summary) from ONE grouped scan of the current
scores: at most tiers x stages x risk buckets cells come back, folded by the pure services.scoring.summary."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import summary
from services.scoring.models import CurrentScore, CustomerFeatures, ScoreSummaryPublic


async def score_summary(*, session: AsyncSession, segment: str | None = None) -> ScoreSummaryPublic:
    """Aggregates only, over every customer's current score (erased customers left out)."""
    scores = CurrentScore.__table__  # type: ignore[attr-defined]
    features = CustomerFeatures.__table__  # type: ignore[attr-defined]
    # Buckets of width 1/RISK_BUCKETS, [low, high), the top one holding 1.0 (portable: no floor() in SQLite).
    width = 1 / summary.RISK_BUCKETS
    bucket = case(
        *((scores.c.churn_risk < (i + 1) * width, i) for i in range(summary.RISK_BUCKETS - 1)),
        else_=summary.RISK_BUCKETS - 1,
    )
    query = (
        select(scores.c.value_tier, scores.c.lifecycle_stage, bucket, func.count(), func.sum(scores.c.clv))
        .select_from(scores.join(features, features.c.customer_id == scores.c.customer_id))
        .where(features.c.erased.is_(False))
        .group_by(scores.c.value_tier, scores.c.lifecycle_stage, bucket)
    )
    if segment is not None:
        query = query.where(features.c.segment == segment)
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
