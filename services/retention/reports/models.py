"""The retention read model: per-customer facts the retention reports need, fed by consumed events.

Why here: the reports (owner performance, value lost to churn, complaint-to-churn conversion,
satisfaction, loyalty, suggested churn reasons) join facts owned by several services: churns
(crm.customer.v1), complaints, surveys and purchases (crm.interaction.v1) and value (crm.scoring.v1,
kept in customer_scores). Retention already consumes those three topics and keeps the customer replica
(owner, segment, tier, status) and the alerts, so it aggregates them in its own store without reading
another service's tables (docs/reports.md, "Retention").

Tables (ids, codes, numbers and times only; events carry no personal data and neither do these):
- ``fact_events``: one row per consumed event that matters (order, return, incident, complaint,
  overdue complaint, survey answer, owner change, price or competitor contact), keyed by event id, so
  redelivery changes nothing.
- ``customer_facts``: per customer, counters maintained from the rows just inserted (orders, revenue,
  first and last order, the months in which it bought as a bit set: order_months.py) and the latest NPS
  and CSAT, plus the non-personal ``team`` and ``share_of_wallet`` attributes where the customer service declares them.
- ``customer_loyalty`` and ``loyalty_sweeps``: each customer's loyalty type as of the start of today,
  re-typed once a day by a set-based sweep (loyalty_sweep.py).
- ``churn_facts``: one row per churn (keyed by the status change's event id) with the tier, segment,
  owner and team at churn, the value lost (historical and predicted), and the suggested reason.
The writers that fill them: facts.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field

from servicekit.clock import utc_now
from servicekit.tables import BigIntId
from servicekit.types import UtcDateTime
from services.retention.alerts.models import Alert
from services.retention.db import RetentionTable


def _at(*, nullable: bool = False, index: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


class FactEvent(RetentionTable, table=True):
    __tablename__ = "fact_events"
    __table_args__ = (
        Index("ix_fact_events_customer_kind_at", "customer_id", "kind", "at"),
        # Periods across customers (reports): covering what the reports read of each row, so a period's
        # orders, complaints and answers are read from the index alone.
        Index("ix_fact_events_kind_at", "kind", "at", "customer_id", "category", "score", "dimension"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    customer_id: str = Field(max_length=100)
    kind: str = Field(max_length=30)
    category: str | None = Field(default=None, max_length=100)
    dimension: str | None = Field(default=None, max_length=30)  # of a survey answer
    score: int | None = None  # of a survey answer
    amount: float | None = None  # of an order or return
    at: datetime = _at()


class CustomerFact(RetentionTable, table=True):
    __tablename__ = "customer_facts"

    customer_id: str = Field(primary_key=True, max_length=100)
    team: str | None = Field(default=None, max_length=100, index=True)
    share_of_wallet: float | None = None
    orders: int = 0
    revenue: float = 0.0
    first_order_at: datetime | None = _at(nullable=True)
    last_order_at: datetime | None = _at(nullable=True)
    # For the cohort curves (order_months.py): the month of the first order (UTC, year x 12 + month - 1) and
    # the months with an order as bits (bit k: k months after the first order's month).
    first_order_month: int | None = None
    order_months: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    nps: int | None = None
    nps_at: datetime | None = _at(nullable=True)
    csat: int | None = None
    csat_at: datetime | None = _at(nullable=True)
    updated_at: datetime = _at()


class CustomerLoyalty(RetentionTable, table=True):
    """Each customer's loyalty type as of the start of a day (UTC), written by the daily sweep
    (loyalty_sweep.py) for the customers then (active or won back, not erased); the "as of today" reports
    read these rows instead of typing every customer per call."""

    __tablename__ = "customer_loyalty"
    __table_args__ = (Index("ix_customer_loyalty_trap", "trap", "customer_id"),)

    customer_id: str = Field(primary_key=True, max_length=100)
    type: str = Field(max_length=20)
    trap: bool = False
    orders: int = 0
    buyer: bool = False  # orders >= 1
    repeater: bool = False  # orders >= 2
    recent_orders: int = 0  # orders in the latest trend window before the as-of instant
    prior_orders: int = 0  # orders in the window before it
    nps: int | None = None
    csat: int | None = None
    as_of: datetime = _at()


class LoyaltySweep(RetentionTable, table=True):
    """One row per day the loyalty sweep typed the customers: the claim (a second sweep for the same day
    finds the row and does nothing) and what the reports show as their as-of instant."""

    __tablename__ = "loyalty_sweeps"

    as_of: datetime = Field(sa_column=Column(UtcDateTime(), primary_key=True))
    customers: int = 0
    window_days: int = 0
    finished_at: datetime = _at()


class ChurnFact(RetentionTable, table=True):
    __tablename__ = "churn_facts"

    event_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(max_length=100, index=True)
    churned_at: datetime = _at(index=True)
    reason: str | None = Field(default=None, max_length=100)
    side: str | None = Field(default=None, max_length=20)
    voluntary: bool | None = None
    tier: str | None = Field(default=None, max_length=20)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=100)
    historical_value: float | None = None  # revenue recorded up to the churn
    predicted_value: float | None = None  # the latest CLV known at the churn
    suggested_reason: str | None = Field(default=None, max_length=100)
    suggestion_confidence: float | None = None
    suggestion_votes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    suggestion_evidence: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    suggested_at: datetime | None = _at(nullable=True)


# The owner-performance report reads the alerts raised in a period.
Index("ix_alerts_first_triggered_at", Alert.__table__.c.first_triggered_at)  # type: ignore[attr-defined]

# Kinds of fact_events.
ORDER, RETURN, INCIDENT = "order", "return", "incident"
COMPLAINT, COMPLAINT_OVERDUE, SURVEY = "complaint", "complaint_overdue", "survey"
# A dimension score of a survey-link answer (the overall score arrives as survey.answered).
SURVEY_DIMENSION = "survey_dimension"
OWNER_CHANGE, PRICE_CONTACT, COMPETITOR_CONTACT = "owner_change", "price_contact", "competitor_contact"
SIGNAL_KINDS = (COMPLAINT, COMPLAINT_OVERDUE, INCIDENT, RETURN, OWNER_CHANGE, PRICE_CONTACT, COMPETITOR_CONTACT)
# Interaction categories that make a contact price-related or competitor-related.
PRICE_CATEGORIES = frozenset({"price", "pricing", "billing", "discount"})
COMPETITOR_CATEGORIES = frozenset({"competitor", "competition"})
SURVEY_DIMENSIONS = ("product", "service", "relationship")
