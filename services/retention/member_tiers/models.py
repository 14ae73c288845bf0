"""Retention's replica of loyalty.tier_changed: each customer's member tier and its benefit codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field

from servicekit.types import UtcDateTime
from services.retention.db import RetentionTable


class MemberTier(RetentionTable, table=True):
    """Codes only: the tier and its benefits. Removed when the customer is erased."""

    __tablename__ = "member_tiers"

    customer_id: str = Field(primary_key=True, max_length=100)
    tier: str | None = Field(default=None, max_length=60, index=True)  # null: below the lowest tier
    benefits: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    changed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
