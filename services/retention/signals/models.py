"""Signals: the consumed events the rules watch, kept for history (risk_jump) and preview."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field

from servicekit.tables import BigIntId
from services.retention.db import (
    RetentionTable,
    at_field,
    json_field,
)


class Signal(RetentionTable, table=True):
    """Consumed events the rules watch (scores, complaints, surveys), kept for risk_jump and preview.

    They hold ids, numbers and classifications only (the contracts carry no free text), so they are
    not personal data beyond the pseudonymous customer id. Pruned after signal_retention_days.
    """

    __tablename__ = "signals"
    __table_args__ = (
        # A customer's recent scores: the rules' history, read for most scores judged.
        Index("ix_signals_customer_type_at", "customer_id", "event_type", "at"),
        # Periods across customers (preview, pruning). BRIN on PostgreSQL: tiny for an append-mostly time
        # column, and never cheaper than the index above for one customer's history, so a cached generic
        # plan or statistics lagging a fast-growing table cannot make the history read scan every
        # customer's signals (a btree on `at`, alone or after event_type, let that happen; docs/performance/).
        Index("ix_signals_at", "at", postgresql_using="brin"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    event_type: str = Field(max_length=100)
    customer_id: str = Field(max_length=100)
    at: datetime = at_field()
    data: dict[str, Any] = json_field(dict)
    # Of a score.updated (else None): what the risk-jump and lifecycle-decline rules read as history.
    churn_risk: float | None = None
    lifecycle_stage: str | None = Field(default=None, max_length=40)
