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
    # What caused the score, by kind (absent from events of earlier versions): the triggering event's type
    # (e.g. "interaction.recorded"), "job.<kind>" for a model job's rescoring of everyone (activation, value
    # refit, rescore) or "scoring.sweep" for the silent-customer sweep. Consumers tell a change of the
    # customer from a change of the lens with it.
    cause: str | None = None
    # The customer's own latest event (interaction, complaint, survey) known to scoring; None for a customer
    # known only by its profile, or from an earlier producer.
    last_event_at: datetime | None = None
    # Set by the silent-customer sweep: when scoring last looked at the customer before this score (its
    # previous score's as_of, or a look that moved nothing). What the score reports happened since then.
    previous_as_of: datetime | None = None


MODELS = (ScoreUpdated,)
