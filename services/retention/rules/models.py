"""Alert rules: the table and the API shapes of rules and their previews."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import String
from sqlmodel import Field

from contracts.common import Severity
from servicekit.pagination import Page
from servicekit.types import json_number
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
from services.retention.rules.core import RuleKind


class AlertRule(RetentionTable, table=True):
    __tablename__ = "rules"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: RuleKind = Field(sa_type=String(40))
    reason: str = Field(max_length=64, index=True)
    severity: Severity = Field(sa_type=String(20))
    params: dict[str, Any] = json_field(dict)
    enabled: bool = flag_field(True)
    created_at: datetime = at_field()
    updated_at: datetime = at_field()


class RuleParamsBody(BaseModel):
    """Parameters of a rule; which ones a kind needs is checked per kind (422 naming params.<field>)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = PydanticField(default=None, ge=0, le=1)
    high_at: float | None = PydanticField(default=None, ge=0, le=1)
    delta: float | None = PydanticField(default=None, ge=0.01, le=1)
    within_days: float | None = PydanticField(default=None, ge=0.01, le=365)
    tiers: list[Tier] = []
    severities: list[Severity] = []
    nps_max: int | None = PydanticField(default=None, ge=0, le=10)
    csat_max: int | None = PydanticField(default=None, ge=1, le=5)

    _numbers_only = field_validator(
        "threshold", "high_at", "delta", "within_days", "nps_max", "csat_max", mode="before"
    )(json_number)


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(min_length=1, max_length=200)
    kind: RuleKind
    reason: ReasonCode | None = None  # default: the kind's reason code
    severity: Severity
    params: RuleParamsBody = RuleParamsBody()
    enabled: StrictBool = True


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    reason: ReasonCode | None = None
    severity: Severity | None = None
    params: RuleParamsBody | None = None
    enabled: StrictBool | None = None


class RulePublic(BaseModel):
    id: str
    name: str
    kind: RuleKind
    reason: str
    severity: Severity
    params: dict[str, Any]
    enabled: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class RulesPublic(Page[RulePublic]):
    pass


class PreviewWindow(BaseModel):
    from_: UtcDatetime = PydanticField(alias="from")
    to: UtcDatetime


class RulePreview(PreviewWindow):
    """An unsaved rule body previewed over a period."""

    rule: RuleCreate


class PreviewCustomer(BaseModel):
    customer_id: str
    first_triggered_at: UtcDatetime
    triggers: int
    severity: Severity


class PreviewPublic(BaseModel):
    rule_id: str | None
    reason: str
    from_: UtcDatetime = PydanticField(serialization_alias="from")
    to: UtcDatetime
    alerts: int
    triggers: int
    customers: list[PreviewCustomer]
