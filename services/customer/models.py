"""Customer tables and API shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import EmailStr
from sqlalchemy import JSON, Column, DateTime, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.events.contracts.common import CustomerStatus
from servicekit.tables import add_plumbing_tables


class CustomerTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = CustomerTable.metadata
add_plumbing_tables(metadata)


class CustomerKind(StrEnum):
    person = "person"
    company = "company"


def _now() -> datetime:
    return datetime.now(UTC)


class CustomerBase(SQLModel):
    kind: CustomerKind = Field(default=CustomerKind.person, sa_type=String(20))
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    external_ref: str | None = Field(default=None, min_length=1, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)


class CustomerCreate(CustomerBase):
    status: CustomerStatus = CustomerStatus.active
    tags: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Customer(CustomerTable, CustomerBase, table=True):
    __tablename__ = "customers"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    external_ref: str | None = Field(default=None, max_length=100, unique=True, index=True)
    segment: str | None = Field(default=None, max_length=100, index=True)
    owner: str | None = Field(default=None, max_length=100, index=True)
    status: CustomerStatus = Field(default=CustomerStatus.active, sa_type=String(20), index=True)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))


class CustomerPublic(CustomerBase):
    id: str
    status: CustomerStatus
    tags: list[str]
    attributes: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
