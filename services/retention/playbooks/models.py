"""Playbooks: the table and API shapes (steps, sequences per tier, control share)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StrictFloat, WithJsonSchema
from pydantic import Field as PydanticField
from sqlmodel import Field

from contracts.customer import VALUE_TIERS
from servicekit.pagination import Page
from services.retention.db import (
    ReasonCode,
    RetentionTable,
    Tier,
    UtcDatetime,
    at_field,
    flag_field,
    json_field,
    new_id,
)
from services.retention.playbooks.core import Action
from services.retention.sequences.core import DEFAULT_KEY, SequenceDef


class Playbook(RetentionTable, table=True):
    __tablename__ = "playbooks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    reason: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    steps: list[dict[str, Any]] = json_field(list)
    # tier (or "default") -> sequence definition (sequences.SequenceDef); empty: the steps become tasks at once
    sequences: dict[str, Any] = json_field(dict)
    control_share: float = 0.0
    enabled: bool = flag_field(True)
    created_at: datetime = at_field()
    updated_at: datetime = at_field()


def _sequence_key(key: str) -> str:
    if key != DEFAULT_KEY and key not in VALUE_TIERS:
        raise ValueError(f"must be {DEFAULT_KEY!r} or one of {list(VALUE_TIERS)}")
    return key


# A sequence's key: "default" or a value tier, published as the enum it is.
SequenceKey = Annotated[
    str, AfterValidator(_sequence_key), WithJsonSchema({"type": "string", "enum": [DEFAULT_KEY, *VALUE_TIERS]})
]


class StepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    due_in_hours: float = PydanticField(gt=0, le=24 * 365)
    only_tiers: list[Tier] = []


class PlaybookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ReasonCode
    name: str = PydanticField(min_length=1, max_length=200)
    steps: list[StepBody] = PydanticField(max_length=20)
    sequences: dict[SequenceKey, SequenceDef] = PydanticField(default_factory=dict, max_length=10)
    control_share: StrictFloat = PydanticField(default=0.0, ge=0, le=1)
    enabled: StrictBool = True


class PlaybookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    steps: list[StepBody] | None = PydanticField(default=None, max_length=20)
    sequences: dict[SequenceKey, SequenceDef] | None = PydanticField(default=None, max_length=10)
    control_share: StrictFloat | None = PydanticField(default=None, ge=0, le=1)
    enabled: StrictBool | None = None


class PlaybookPublic(BaseModel):
    id: str
    reason: str
    name: str
    steps: list[StepBody]
    sequences: dict[str, SequenceDef] = {}
    control_share: float
    enabled: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PlaybooksPublic(Page[PlaybookPublic]):
    pass
