"""Inbound ERP/SCM events: the parked events' table and its API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field

from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.interaction.db import InteractionTable, UtcDatetime


class ParkedEvent(InteractionTable, table=True):
    """An inbound ERP/SCM event naming a customer this service does not know yet.

    Kept until a customer with that external reference appears (crm.customer.v1), then applied and
    deleted in the same transaction. Never dropped.
    """

    __tablename__ = "parked_events"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    event_type: str = Field(max_length=100)
    topic: str = Field(max_length=200)
    customer_ref: str = Field(max_length=100, index=True)
    envelope: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    reason: str = Field(sa_type=Text)
    parked_at: datetime = Field(sa_type=UtcDateTime)
    attempts: int = 0
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)


class ParkedEventPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    topic: str
    customer_ref: str
    reason: str
    parked_at: UtcDatetime
    attempts: int
    last_attempt_at: UtcDatetime | None
    last_error: str | None
    envelope: dict[str, Any]

    @classmethod
    def of(cls, row: ParkedEvent) -> ParkedEventPublic:
        return cls.model_validate(row, from_attributes=True)


class ParkedEventsPublic(Page[ParkedEventPublic]):
    pass
