"""Events published by the scoring service on crm.scoring.v1."""

from datetime import datetime

from pydantic import BaseModel

from contracts import topics
from servicekit.events.envelope import EventData


class Factor(BaseModel):
    """One reason behind a score, signed: positive raises the score it explains."""

    code: str
    label: str
    contribution: float


class ScoreValues(BaseModel):
    churn_risk: float
    health: float
    value_tier: str | None = None
    lifecycle_stage: str | None = None
    p_alive: float | None = None
    clv: float | None = None
    expected_purchases: float | None = None  # over the CLV horizon of the value model


class ScoreUpdated(EventData):
    topic = topics.SCORING
    event_type = "score.updated"
    customer_id: str
    previous: ScoreValues | None
    current: ScoreValues
    factors: list[Factor] = []
    model_version: str
    caused_by: str  # id of the event that triggered the rescoring (lineage)
    computed_at: datetime
    # The business time the score describes (the customer's latest event; older than computed_at for
    # history imported or replayed). Absent from events of earlier versions.
    as_of: datetime | None = None


MODELS = (ScoreUpdated,)
