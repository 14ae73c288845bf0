"""Interaction tables and API shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Column, DateTime, Index, Numeric, String, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.events.contracts.common import InteractionType, Severity
from servicekit.tables import add_plumbing_tables
from services.interaction.sla import ComplaintStatus, as_utc


class InteractionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = InteractionTable.metadata
add_plumbing_tables(metadata)

# Clocks disagree a little; anything later than this is a typo or a wrong time zone.
MAX_FUTURE_SKEW = timedelta(minutes=5)
TEXT_MAX = 5000
SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5)}


class Initiator(StrEnum):
    customer = "customer"
    company = "company"


class SurveyKind(StrEnum):
    nps = "nps"  # 0-10, "how likely are you to recommend us"
    csat = "csat"  # 1-5, "how satisfied were you"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _dt_column(*, nullable: bool) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


# ---- the local customer replica ---------------------------------------------------------------


class KnownCustomer(InteractionTable, table=True):
    """What this service knows of a customer, built from crm.customer.v1 (ids, refs, status; no personal data)."""

    __tablename__ = "known_customers"

    customer_id: str = Field(primary_key=True, max_length=100)
    external_ref: str | None = Field(default=None, max_length=100, index=True)
    status: str | None = Field(default=None, sa_type=String(20))
    # Guards against out-of-order events: the customer version and the time of the status held here.
    version: int = 0
    status_at: datetime | None = Field(default=None, sa_column=_dt_column(nullable=True))
    erased: bool = False
    erased_at: datetime | None = Field(default=None, sa_column=_dt_column(nullable=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_dt_column(nullable=False))


# ---- interactions -------------------------------------------------------------------------------


class InteractionBase(SQLModel):
    customer_id: str = Field(min_length=1, max_length=100)
    type: InteractionType = Field(sa_type=String(20))
    channel: str | None = Field(default=None, min_length=1, max_length=40, description="e.g. phone, email, web, store")
    initiated_by: Initiator | None = Field(default=None, sa_type=String(10))
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2, sa_type=Numeric(14, 2))
    currency: str | None = Field(
        default=None, min_length=3, max_length=3, sa_type=String(3), schema_extra={"pattern": r"^[A-Z]{3}$"}
    )
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    order_id: str | None = Field(default=None, min_length=1, max_length=100)
    severity: Severity | None = Field(default=None, sa_type=String(10))
    category: str | None = Field(default=None, min_length=1, max_length=100)
    rating: int | None = Field(default=None, ge=1, le=5, description="a 1-5 star rating")
    sentiment: float | None = Field(default=None, ge=-1, le=1, description="-1 (negative) .. 1 (positive)")
    survey: SurveyKind | None = Field(default=None, sa_type=String(10))
    score: int | None = Field(default=None, description="survey answer: nps 0-10, csat 1-5")
    text: str | None = Field(default=None, max_length=TEXT_MAX, sa_type=Text)
    external_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="the source system's id; repeats are idempotent"
    )


def _required(kind: str) -> PydanticCustomError:
    return PydanticCustomError("missing", "Field required for {kind}", {"kind": kind})


def _not_allowed(kind: str) -> PydanticCustomError:
    return PydanticCustomError("extra_forbidden", "Only allowed for {kind}", {"kind": kind})


class InteractionCreate(InteractionBase):
    # Defaults are validated too, so the cross-field rules below run for fields left out and name them.
    model_config = ConfigDict(validate_default=True)  # type: ignore[assignment]

    occurred_at: datetime = Field(default_factory=utc_now, description="may lie in the past; default now")

    @field_validator("channel", "category")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return value.strip().lower() if value is not None else None

    @field_validator("amount")
    @classmethod
    def _amount_for_purchases(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is None and info.data.get("type") == InteractionType.purchase:
            raise _required("a purchase")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_with_amount(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("amount") is not None:
            raise _required("an amount")
        return value

    @field_validator("severity")
    @classmethod
    def _severity_for_complaints(cls, value: Severity | None, info: ValidationInfo) -> Severity | None:
        if value is None and info.data.get("type") == InteractionType.complaint:
            raise _required("a complaint")
        return value

    @field_validator("survey")
    @classmethod
    def _survey_kind(cls, value: SurveyKind | None, info: ValidationInfo) -> SurveyKind | None:
        is_survey = info.data.get("type") == InteractionType.survey
        if value is None and is_survey:
            raise _required("a survey")
        if value is not None and "type" in info.data and not is_survey:
            raise _not_allowed("a survey")
        return value

    @field_validator("score")
    @classmethod
    def _score_in_survey_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "type" in info.data and info.data["type"] != InteractionType.survey:
            if value is not None:
                raise _not_allowed("a survey")
            return value
        if value is None:
            if info.data.get("type") == InteractionType.survey:
                raise _required("a survey")
            return value
        kind = info.data.get("survey")
        if kind is not None:
            low, high = SCORE_RANGES[kind]
            if not low <= value <= high:
                raise PydanticCustomError(
                    "out_of_range",
                    "Must be between {low} and {high} for a {kind} survey",
                    {"kind": kind, "low": low, "high": high},
                )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime) -> datetime:
        value = as_utc(value)  # a time without offset is taken as UTC
        if value > utc_now() + MAX_FUTURE_SKEW:
            raise PydanticCustomError("future", "Must not lie more than 5 minutes in the future")
        return value


class Interaction(InteractionTable, InteractionBase, table=True):
    __tablename__ = "interactions"
    # A customer's timeline, newest first, is the main read; the index also serves lookups by customer.
    __table_args__ = (Index("ix_interactions_customer_occurred", "customer_id", "occurred_at"),)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    occurred_at: datetime = Field(sa_column=_dt_column(nullable=False))
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=_dt_column(nullable=False))
    external_id: str | None = Field(default=None, max_length=200, unique=True, index=True)
    complaint_status: ComplaintStatus | None = Field(default=None, sa_type=String(20))
    due_at: datetime | None = Field(default=None, sa_column=_dt_column(nullable=True))


class InteractionPublic(BaseModel):
    id: str
    customer_id: str
    type: InteractionType
    channel: str | None
    initiated_by: Initiator | None
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime
    amount: Decimal | None
    currency: str | None
    quantity: int | None
    order_id: str | None
    severity: Severity | None
    category: str | None
    rating: int | None
    sentiment: float | None
    survey: SurveyKind | None
    score: int | None
    text: str | None
    external_id: str | None
    complaint_status: ComplaintStatus | None
    due_at: UtcDatetime | None

    @classmethod
    def of(cls, interaction: Interaction) -> InteractionPublic:
        return cls.model_validate(interaction, from_attributes=True)


class InteractionsPublic(BaseModel):
    """One page of a customer's timeline, newest first; total counts every match of the filters."""

    items: list[InteractionPublic]
    total: int
    limit: int
    offset: int
