"""Every score of many customers at once.

Pure given the models: no I/O, no clock. A consumer batch is scored in one call (service and
write_behind queue the rescorings and score them together just before the transaction commits), so
the churn model runs one matrix over the whole batch and the value closed forms one set of numpy
expressions. Every customer's arithmetic is independent of the others in its batch: scoring one
customer alone gives exactly what scoring it in a batch gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.scoring import Factor, ScoreValues
from services.scoring.scores import rules
from services.scoring.scores.features import FeatureState
from services.scoring.scores.rules import RuleWeights
from services.scoring.training import churn_model
from services.scoring.training.churn_model import TrainedChurnModel
from services.scoring.value import valuation
from services.scoring.value.valuation import CustomerValue, ValueModel


@dataclass(frozen=True)
class ActiveModels:
    value: ValueModel | None
    churn_id: str | None
    churn: TrainedChurnModel | None


NO_MODELS = ActiveModels(None, None, None)


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

    def columns(self) -> dict[str, Any]:
        """The score columns of a history / current row (everything but lineage and times)."""
        v = self.value
        return {
            "churn_risk": self.churn_risk,
            "health": self.health,
            "factors": self.factors,
            "model_version": self.model_version,
            "value_tier": None if v is None else v.tier,
            "lifecycle_stage": self.lifecycle_stage,
            "p_alive": None if v is None else round(v.p_alive, 4),
            "expected_purchases": None if v is None else round(v.expected_purchases, 4),
            "clv": None if v is None else round(v.clv, 2),
            "value_at_risk": None if v is None else round(v.clv * self.churn_risk, 2),
            "value_model_version": self.value_model_version,
        }


def compute_batch(
    items: Sequence[tuple[FeatureState, datetime]], models: ActiveModels, weights: RuleWeights
) -> list[Computed]:
    """Every score of each (customer state, as_of) pair, in order."""
    if not items:
        return []
    snapshots = [churn_model.snapshot(state, as_of) for state, as_of in items]
    if models.churn is not None and models.churn_id is not None:
        churn = models.churn.risk_and_factors_batch(snapshots)
        version = models.churn_id
    else:
        churn = [rules.churn_risk(state, as_of, weights) for state, as_of in items]
        version = rules.model_version(weights)
    values: list[CustomerValue | None] = (
        [None] * len(items) if models.value is None else valuation.customer_values(items, models.value)
    )
    out = []
    for (state, as_of), snap, (risk, churn_factors), value in zip(items, snapshots, churn, values, strict=True):
        health, health_factors = rules.health(state, risk, as_of, weights)
        stage = valuation.lifecycle_stage(state, as_of, None if value is None else value.p_alive)
        out.append(
            Computed(
                churn_risk=round(risk, 4),
                health=round(health, 1),
                factors={
                    "churn_risk": [f.model_dump() for f in churn_factors],
                    "health": [f.model_dump() for f in health_factors],
                },
                churn_factors=churn_factors,
                model_version=version,
                value=value,
                value_model_version=None if models.value is None or value is None else models.value.id,
                lifecycle_stage=stage,
                snapshot=snap,
            )
        )
    return out


def compute_scores(state: FeatureState, as_of: datetime, models: ActiveModels, weights: RuleWeights) -> Computed:
    """Every score of one customer at `as_of` (a batch of one)."""
    return compute_batch([(state, as_of)], models, weights)[0]


def jsonable(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as stored: NaN is not JSON, so it becomes null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in snapshot.items()}
