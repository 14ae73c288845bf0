"""The retention metrics' API shapes (outcomes: churn, retention and save rates, precision, uplift)."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic import Field as PydanticField

from services.retention.db import (
    UtcDatetime,
)


class GroupRatesPublic(BaseModel):
    alerts: int
    churned: int
    churn_rate: float | None


class MetricsPublic(BaseModel):
    key: str | None = None  # the group's tier, segment or rule id; None for the whole population
    customers: int
    churned: int
    churn_rate: float | None
    retention_rate: float | None
    alerted_customers: int
    positive_customers: int
    saved_customers: int
    save_rate: float | None
    precision: float | None
    churned_with_warning: int
    recall: float | None
    median_warning_days: float | None
    treated: GroupRatesPublic
    control: GroupRatesPublic
    uplift: float | None


class RetentionMetricsPublic(BaseModel):
    from_: UtcDatetime = PydanticField(serialization_alias="from")
    to: UtcDatetime
    group_by: str | None
    overall: MetricsPublic
    groups: list[MetricsPublic]
