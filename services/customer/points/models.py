"""Loyalty points (docs/loyalty-points.md): the ledger tables and API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PydField
from pydantic_core import PydanticCustomError
from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, UniqueConstraint
from sqlmodel import Field

from servicekit.clock import utc_now
from services.customer.common import CustomerTable, UtcDatetime, dt_column
from services.customer.points.loyalty_points import EntryKind

POINTS_SOURCE = r"^[a-z0-9_-]{1,20}$"
POINTS_REASON = r"^[a-z0-9_.:-]{1,40}$"


class PointsAccount(CustomerTable, table=True):
    """The customer's points balance (the sum of the ledger, kept in step in the same transaction),
    lifetime earned points and member tier code."""

    __tablename__ = "points_accounts"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    lifetime_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    tier: str | None = Field(default=None, max_length=30)
    entries: int = 0
    updated_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


class PointsEntry(CustomerTable, table=True):
    """One ledger entry; (source, source_ref) is unique, so a replayed ERP document is applied once."""

    __tablename__ = "points_entries"
    __table_args__ = (UniqueConstraint("source", "source_ref", name="uq_points_entries_source_ref"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), nullable=False, index=True))
    kind: str = Field(sa_type=String(10))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))  # signed for adjust, else positive
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str | None = Field(default=None, max_length=40)
    source: str = Field(max_length=20)
    source_ref: str = Field(max_length=100)
    occurred_at: datetime = Field(sa_column=dt_column(nullable=False))
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


class PointsAdjustment(BaseModel):
    """POST /customers/{id}/points: one ledger entry booked by an administrator or an integration."""

    model_config = ConfigDict(extra="forbid")
    kind: EntryKind = PydField(EntryKind.adjust, description="earn, redeem, expire or adjust")
    amount: int = PydField(
        ge=-1_000_000_000, le=1_000_000_000, description="points; positive, except adjust which is signed"
    )
    reason: str | None = PydField(None, pattern=POINTS_REASON, description="a code, e.g. goodwill, correction")
    source: str = PydField("api", pattern=POINTS_SOURCE, description="the booking system, e.g. api, erp")
    source_ref: str = PydField(
        min_length=1, max_length=100, description="the document id in that system: a repeat books nothing"
    )
    occurred_at: UtcDatetime | None = PydField(None, description="when it happened (default: now)")

    @model_validator(mode="after")
    def _amount_sign(self) -> PointsAdjustment:
        if self.kind is EntryKind.adjust and self.amount == 0:
            raise PydanticCustomError("amount", "an adjustment must not be zero")
        if self.kind is not EntryKind.adjust and self.amount <= 0:
            raise PydanticCustomError("amount", "must be positive for earn, redeem and expire")
        return self


class PointsEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: EntryKind
    amount: int
    balance_after: int
    reason: str | None
    source: str
    source_ref: str
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime


class TierPublic(BaseModel):
    code: str
    min_lifetime_points: int
    benefits: list[str]


class PointsPublic(BaseModel):
    customer_id: str
    balance: int
    lifetime_points: int
    tier: TierPublic | None = PydField(description="null until the first ledger entry, or below every tier")
    next_tier: TierPublic | None = PydField(description="the next tier up, if any")
    items: list[PointsEntryPublic] = PydField(description="the ledger, newest first")
    total: int
    limit: int
    offset: int


class PointsBooked(BaseModel):
    """POST answer: the entry (the earlier one on a repeat) and the balance after the request."""

    entry: PointsEntryPublic
    replayed: bool = PydField(description="true when this source_ref was booked before: nothing changed")
    balance: int
    lifetime_points: int
    tier: str | None
