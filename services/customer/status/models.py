"""The status history and the status change request (the lifecycle rules are in lifecycle.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, computed_field
from sqlalchemy import BigInteger, Column, Date, ForeignKey, Integer, String, Text
from sqlmodel import Field

from contracts.common import CustomerStatus
from servicekit.clock import utc_now
from servicekit.pagination import Page
from services.customer.common import CustomerTable, UtcDatetime, dt_column
from services.customer.status.lifecycle import ChurnReason, ChurnSide, canonical_reason, facts_of

# A churn reason code; a retired code (lifecycle.LEGACY_REASONS) is read as its successor.
ChurnReasonCode = Annotated[ChurnReason, BeforeValidator(canonical_reason)]


def reason_facts(reason: ChurnReason | str | None) -> dict[str, Any]:
    """The side and voluntariness a churn event carries next to its reason code (additive fields)."""
    facts = facts_of(reason)
    return {"side": facts.side.value, "voluntary": facts.voluntary} if facts else {}


class StatusChange(CustomerTable, table=True):
    """The status history: every transition with its reason and the person's note."""

    __tablename__ = "status_changes"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), nullable=False, index=True))
    previous_status: CustomerStatus | None = Field(default=None, sa_type=String(20))
    status: CustomerStatus = Field(sa_type=String(20))
    reason: ChurnReason | None = Field(default=None, sa_type=String(30))
    churned_at: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    note: str | None = Field(default=None, sa_type=Text)  # free text: cleared by erasure
    version: int
    changed_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


class StatusChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CustomerStatus
    reason: ChurnReasonCode | None = Field(
        default=None, description="required when the status becomes churned (a code of docs/reports.md#churn-reasons)"
    )
    churned_at: date | None = Field(default=None, description="required when the status becomes churned")
    note: str | None = Field(default=None, max_length=1000, description="kept in the status history")


class StatusChangePublic(BaseModel):
    previous_status: CustomerStatus | None
    status: CustomerStatus
    reason: ChurnReasonCode | None
    churned_at: date | None
    note: str | None
    version: int
    changed_at: UtcDatetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def side(self) -> ChurnSide | None:
        """company or customer side of the churn reason (unknown for ``other``)"""
        facts = facts_of(self.reason)
        return facts.side if facts else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def voluntary(self) -> bool | None:
        """whether the customer chose to leave (false: dropped by the company, relocation, closure)"""
        facts = facts_of(self.reason)
        return facts.voluntary if facts else None


class StatusHistoryPage(Page[StatusChangePublic]):
    pass
