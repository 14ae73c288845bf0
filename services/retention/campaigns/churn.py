"""A campaign's churn conditions: who left why, when and with how much value (docs/campaigns.md#audience).

The segment filter (scoring) holds scores, value, RFM and the profile; why and when a customer churned and
the value that went with them are retention's churn facts (reports.models.ChurnFact, one row per churn).
A campaign that names `churn` keeps, at launch, only the audience members whose latest churn matches every
condition given; a member with no recorded churn does not match. Pure: service.churn_matching reads the
facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator
from pydantic import Field as PydanticField

ReasonCode = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")]


class ValueBasis(StrEnum):
    predicted = "predicted"  # the latest CLV known at the churn: the value the customer took away
    historical = "historical"  # the revenue recorded up to the churn


class ChurnFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reasons: list[ReasonCode] = PydanticField(
        default_factory=list, max_length=30, description="churn reason codes (competitor, price, ...); empty: any"
    )
    churned_within_days: float | None = PydanticField(
        None, gt=0, le=3650, description="churned at most this many days before the launch"
    )
    churned_before_days: float | None = PydanticField(
        None, ge=0, le=3650, description="churned at least this many days before the launch (lapsed a while)"
    )
    min_value_lost: float | None = PydanticField(
        None, ge=0, le=1e12, description="the value that left with the churn, at least this (see value_basis)"
    )
    value_basis: ValueBasis = PydanticField(
        ValueBasis.predicted, description="predicted: the CLV known at the churn; historical: revenue up to it"
    )

    @model_validator(mode="after")
    def _window(self) -> ChurnFilter:
        within, before = self.churned_within_days, self.churned_before_days
        if within is not None and before is not None and before >= within:
            raise ValueError("churned_before_days: must be below churned_within_days")
        return self


@dataclass(frozen=True, slots=True)
class Churn:
    """A customer's latest churn, as far as the filter needs it."""

    at: datetime
    reason: str | None
    historical_value: float | None
    predicted_value: float | None


def matches(churn: Churn | None, rule: ChurnFilter, now: datetime) -> bool:
    """Whether a customer whose latest churn is `churn` (None: none recorded) passes every condition."""
    if churn is None:
        return False
    if rule.reasons and churn.reason not in rule.reasons:
        return False
    age = now - churn.at
    if rule.churned_within_days is not None and age > timedelta(days=rule.churned_within_days):
        return False
    if rule.churned_before_days is not None and age < timedelta(days=rule.churned_before_days):
        return False
    if rule.min_value_lost is not None:
        value = churn.predicted_value if rule.value_basis is ValueBasis.predicted else churn.historical_value
        if value is None or value < rule.min_value_lost:
            return False
    return True
