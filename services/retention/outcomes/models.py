"""The retention metrics' read model (each customer's contribution rows and their monthly totals) and API
shapes (outcomes: churn, retention and save rates, precision, uplift)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field

from servicekit.tables import BigIntId
from servicekit.types import UtcDateTime
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
)


class MetricFact(RetentionTable, table=True):
    """One contribution row of a customer (outcomes/contributions.py): codes and times only, no free text.

    lo, t and u hold the bounds as times (FAR_PAST / FAR_FUTURE for none); tier and segment are the
    customer's group keys, so a period's edge months are counted from these rows with their groups.
    """

    __tablename__ = "metric_facts"
    __table_args__ = (Index("ix_metric_facts_measure_t", "measure", "t"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    customer_id: str = Field(max_length=100, index=True)
    measure: str = Field(max_length=20)
    rule: str | None = Field(default=None, max_length=64)
    tier: str = Field(max_length=20)
    segment: str = Field(max_length=100)
    lo: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    t: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    u: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class MetricTotal(RetentionTable, table=True):
    """How many contribution rows fall in each (group, measure, month of lo, of t, of u): counts only.

    kind: all (key ""), tier, segment or rule; months as year x 12 + month - 1 (UTC).
    """

    __tablename__ = "metric_totals"

    kind: str = Field(primary_key=True, max_length=10)
    key: str = Field(primary_key=True, max_length=100)
    measure: str = Field(primary_key=True, max_length=20)
    lo_month: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    t_month: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    u_month: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    n: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class MetricTotalsState(RetentionTable, table=True):
    """The look-back the rows were built with (recall and warning time depend on it): one row."""

    __tablename__ = "metric_totals_state"

    id: int = Field(default=1, primary_key=True)
    lookback_seconds: int
    # A rebuild for a new look-back under way: the last customer id rebuilt so far ("" before the first
    # chunk). None: the rows are complete for lookback_seconds.
    rebuilt_after: str | None = Field(default=None, max_length=100)


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
