"""Pure: the customer pyramid, lifecycle funnel and churn-risk distribution from grouped counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from contracts.customer import VALUE_TIERS

TIERS = VALUE_TIERS
STAGES = ("exploration", "formation", "stability", "decline")
RISK_BUCKETS = 10


def risk_bucket(churn_risk: float) -> int:
    """0..RISK_BUCKETS-1: the bucket of width 1/RISK_BUCKETS holding ``churn_risk`` (1.0 in the last)."""
    return min(max(int(churn_risk * RISK_BUCKETS), 0), RISK_BUCKETS - 1)


def tier_shares(rows: Iterable[tuple[str | None, int, float | None]]) -> list[dict[str, object]]:
    """(tier, customers, summed CLV) rows -> the pyramid, platinum first, unvalued last, each with its
    share of the total value (0 when no customer has a value yet)."""
    by_tier: dict[str | None, tuple[int, float]] = {}
    for tier, customers, value in rows:
        known = tier if tier in TIERS else None
        held = by_tier.get(known, (0, 0.0))
        by_tier[known] = (held[0] + customers, held[1] + (value or 0.0))
    total = sum(value for _, value in by_tier.values())
    order: list[str | None] = [*TIERS, None]
    return [
        {
            "tier": tier,
            "customers": by_tier.get(tier, (0, 0.0))[0],
            "value": round(by_tier.get(tier, (0, 0.0))[1], 2),
            "value_share": round(by_tier.get(tier, (0, 0.0))[1] / total, 4) if total > 0 else 0.0,
        }
        for tier in order
        if tier is not None or tier in by_tier
    ]


def stage_counts(rows: Iterable[tuple[str | None, int]]) -> list[dict[str, object]]:
    """(stage, customers) rows -> the funnel in lifecycle order, unknown stage last (only if any)."""
    by_stage: dict[str | None, int] = {}
    for stage, customers in rows:
        known = stage if stage in STAGES else None
        by_stage[known] = by_stage.get(known, 0) + customers
    order: list[str | None] = [*STAGES, None]
    return [{"stage": s, "customers": by_stage.get(s, 0)} for s in order if s is not None or s in by_stage]


def risk_distribution(counts: Mapping[int, int]) -> list[dict[str, object]]:
    """Bucket index -> customers, as every bucket in order with its bounds."""
    width = 1 / RISK_BUCKETS
    return [
        {"low": round(i * width, 2), "high": round((i + 1) * width, 2), "customers": counts.get(i, 0)}
        for i in range(RISK_BUCKETS)
    ]


def fold_cells(
    cells: Iterable[tuple[str | None, str | None, int, int, float | None]],
) -> tuple[list[tuple[str | None, int, float | None]], list[tuple[str | None, int]], dict[int, int]]:
    """(tier, stage, risk bucket, customers, summed CLV) cells of one grouped scan -> the rows that
    tier_shares, stage_counts and risk_distribution take."""
    tiers: dict[str | None, tuple[int, float | None]] = {}
    stages: dict[str | None, int] = {}
    risk: dict[int, int] = {}
    for tier, stage, bucket, customers, value in cells:
        held, held_value = tiers.get(tier, (0, None))
        tiers[tier] = (held + customers, held_value if value is None else (held_value or 0.0) + value)
        stages[stage] = stages.get(stage, 0) + customers
        index = min(max(bucket, 0), RISK_BUCKETS - 1)
        risk[index] = risk.get(index, 0) + customers
    return [(t, n, v) for t, (n, v) in tiers.items()], list(stages.items()), risk
