"""Erasure requests and the services' receipts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Column, ForeignKey, String, Text
from sqlmodel import Field

from servicekit.clock import utc_now
from services.customer.common import CustomerTable, UtcDatetime, dt_column


class ErasureRequest(CustomerTable, table=True):
    __tablename__ = "erasure_requests"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    requested_at: datetime = Field(sa_column=dt_column(nullable=False))


class ErasureReceipt(CustomerTable, table=True):
    """One service's confirmation that it erased its copy of a customer's personal data."""

    __tablename__ = "erasure_receipts"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    service: str = Field(max_length=50, primary_key=True)
    confirmed_at: datetime = Field(sa_column=dt_column(nullable=False))
    summary: str = Field(default="", sa_type=Text)
    event_id: str | None = Field(default=None, max_length=200)
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


class ErasureReceiptPublic(BaseModel):
    service: str
    confirmed_at: UtcDatetime
    summary: str


class ErasureStatus(BaseModel):
    customer_id: str
    requested_at: UtcDatetime
    services: dict[str, UtcDatetime | None] = Field(description="each expected service's confirmation time or null")
    complete: bool = Field(description="every expected service has confirmed")
    receipts: list[ErasureReceiptPublic]
