"""Webhooks: subscriptions, the delivery log (an outbox for webhooks) and their API shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, HttpUrl
from pydantic import Field as PydanticField
from sqlalchemy import Column, Index, String, Text
from sqlmodel import Field

from servicekit.pagination import Page
from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    flag_field,
    json_field,
    new_id,
)


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # gave up after the maximum number of attempts


class Webhook(RetentionTable, table=True):
    __tablename__ = "webhooks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    url: str = Field(max_length=2000)
    event_types: list[str] = json_field(list)  # empty: every retention event
    # Needed in clear to sign; never returned by the API.
    secret: str = Field(max_length=200)
    active: bool = flag_field(True)
    created_at: datetime = at_field()


class WebhookDelivery(RetentionTable, table=True):
    """One event to one webhook: written with the change (an outbox for webhooks), sent by a loop."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    webhook_id: str = Field(max_length=36, index=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=String(20))
    attempts: int = 0
    next_attempt_at: datetime = at_field()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = at_field()
    delivered_at: datetime | None = at_field(nullable=True)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    event_types: list[str] = []  # empty: every retention event
    secret: str = PydanticField(min_length=16, max_length=200)


class WebhookPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    active: bool
    created_at: UtcDatetime


class WebhooksPublic(Page[WebhookPublic]):
    pass


class DeliveryPublic(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: UtcDatetime
    last_status_code: int | None
    last_error: str | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None


class DeliveriesPublic(Page[DeliveryPublic]):
    pass
