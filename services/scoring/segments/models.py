"""Saved segments (filters over scores, value, RFM, tier, stage and profile fields): table and API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, WithJsonSchema
from pydantic import Field as PydanticField
from sqlalchemy import Column
from sqlmodel import Field

from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.scoring.common import ScoringTable, json_column
from services.scoring.segments import segment_filter


class SavedSegment(ScoringTable, table=True):
    """A saved filter over scores, value, RFM, tier, stage and profile fields (segments.segment_filter)."""

    __tablename__ = "segments"

    id: str = Field(primary_key=True, max_length=50)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    conditions: list[Any] = json_column(list)
    created_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))


class SegmentCreate(BaseModel):
    name: str = PydanticField(min_length=1, max_length=200)
    description: str | None = PydanticField(None, max_length=2000)
    filter: Annotated[list[Any], WithJsonSchema(segment_filter.json_schema())] = PydanticField(
        description="conditions that must all hold: [{field, op, value}]; GET /segments/fields lists the fields"
    )


class SegmentPublic(BaseModel):
    id: str
    name: str
    description: str | None
    filter: list[Any]
    created_by: str | None
    created_at: datetime


class SegmentsPublic(Page[SegmentPublic]):
    pass


class SegmentField(BaseModel):
    field: str
    type: str
    ops: list[str]
    choices: list[str] | None
    description: str


class SegmentCustomer(BaseModel):
    customer_id: str
    segment: str | None
    status: str | None
    value_tier: str | None
    lifecycle_stage: str | None
    churn_risk: float | None
    clv: float | None
    contribution: float | None


class _CustomersOf(BaseModel):
    segment_id: str


# The page's fields follow the segment's id (base classes' fields come in reverse order of the bases),
# so the document and the answers keep the order they always had.
class SegmentCustomersPublic(Page[SegmentCustomer], _CustomersOf):
    pass


class SegmentCount(BaseModel):
    segment_id: str
    customers: int
