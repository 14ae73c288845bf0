"""The customer replica: what retention keeps of each customer (owner, segment, status, latest score)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field

from servicekit.tables import BigIntId
from services.retention.db import (
    RetentionTable,
    at_field,
)


class CustomerScore(RetentionTable, table=True):
    """The latest score of each customer, from score.updated: lets any new alert carry its value at risk.

    Complaints and scores arrive on different topics in no mutual order, so an alert raised by a
    complaint cannot wait for "the" score; it takes the latest one known here.
    """

    __tablename__ = "customer_scores"

    customer_id: str = Field(primary_key=True, max_length=100)
    churn_risk: float
    clv: float | None = None
    value_at_risk: float | None = None
    value_tier: str | None = Field(default=None, max_length=20)
    p_alive: float | None = None
    lifecycle_stage: str | None = Field(default=None, max_length=20)
    as_of: datetime = at_field()
    updated_at: datetime = at_field()
    # The customer's own latest event as scoring knew it (None: not yet told): an evaluation leaves a
    # customer whose situation lies beyond the alert history horizon to win-back.
    last_event_at: datetime | None = at_field(nullable=True)


class Customer(RetentionTable, table=True):
    """Replica of what retention needs from crm.customer.v1: who owns the customer, segment, status."""

    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, max_length=20)
    # An account-managed tier (attributes.tier or attributes.value_tier) overrides the computed one.
    tier: str | None = Field(default=None, max_length=20)
    version: int = 0
    first_seen: datetime = at_field()
    erased_at: datetime | None = at_field(nullable=True)
    updated_at: datetime = at_field()


class StatusChange(RetentionTable, table=True):
    __tablename__ = "status_changes"

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    customer_id: str = Field(max_length=100, index=True)
    previous_status: str | None = Field(default=None, max_length=20)
    status: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=100)
    at: datetime = at_field(index=True)
