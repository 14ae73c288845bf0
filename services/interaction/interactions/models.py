"""Interactions: the table, the create/public shapes and the bulk import's request and report."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError
from sqlalchemy import Index, Numeric, String, Text, text
from sqlmodel import Field, SQLModel

from contracts.common import InteractionType, Severity
from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import UtcDateTime, as_utc
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.complaints.workflow import RESOLUTION_MAX, ComplaintCategory, category_of
from services.interaction.db import InteractionTable, UtcDatetime

# Clocks disagree a little; anything later than this is a typo or a wrong time zone.
MAX_FUTURE_SKEW = timedelta(minutes=5)
TEXT_MAX = 5000
SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5)}
# An amount as text: a plain numeral (no exponent, blank, "+" or digit group); within that, what the table holds
# (Numeric(14, 2), not negative) is exactly what AMOUNT_TEXT matches, which the document states.
NUMERAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
AMOUNT_TEXT = re.compile(r"^(-0+(\.0+)?|0*[0-9]{1,12}(\.[0-9]{1,2}0*)?)$")
AMOUNT_MAX = 999_999_999_999.99
AMOUNT_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": AMOUNT_MAX, "multipleOf": 0.01},
        {"type": "string", "pattern": AMOUNT_TEXT.pattern},
        {"type": "null"},
    ]
}


class Initiator(StrEnum):
    customer = "customer"
    company = "company"


class SurveyKind(StrEnum):
    nps = "nps"  # 0-10, "how likely are you to recommend us"
    csat = "csat"  # 1-5, "how satisfied were you"


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
    offer_code: str | None = Field(default=None, min_length=1, max_length=60, description="a campaign offer redeemed")
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

    occurred_at: UtcDatetime = Field(default_factory=utc_now, description="may lie in the past; default now")
    amount: Decimal | None = Field(
        default=None,
        ge=0,
        max_digits=14,
        decimal_places=2,
        description="a JSON number or decimal text, at most 2 places after the point",
        schema_extra={"json_schema_extra": AMOUNT_SCHEMA},
    )

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_text(cls, value: Any) -> Any:
        if isinstance(value, str) and not NUMERAL.match(value):
            raise PydanticCustomError("decimal_text", "Must be decimal text such as 19.99 (at most 2 places)")
        return value

    @field_validator("channel", "category")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return value.strip().lower() if value is not None else None

    @field_validator("category")
    @classmethod
    def _complaint_category(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Complaints are reported by category, so theirs come from a fixed list; other types stay free.
        if info.data.get("type") != InteractionType.complaint:
            return value
        try:
            return category_of(value).value
        except ValueError:
            raise PydanticCustomError(
                "enum", "Must be one of: {expected}", {"expected": ", ".join(c.value for c in ComplaintCategory)}
            ) from None

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
    __table_args__ = (
        Index("ix_interactions_customer_occurred", "customer_id", "occurred_at"),
        # The complaint reports read a period's complaints: a tenth of the rows, found without a full scan.
        Index(
            "ix_interactions_complaints_opened",
            "occurred_at",
            postgresql_where=text("type = 'complaint'"),
            sqlite_where=text("type = 'complaint'"),
        ),
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    external_id: str | None = Field(default=None, max_length=200, unique=True, index=True)
    complaint_status: ComplaintStatus | None = Field(default=None, sa_type=String(20), index=True)
    due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # When the overdue watcher flagged the complaint (and emitted complaint.overdue): at most once.
    overdue_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    complaint_updated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The solution agreed with the customer (free text: blanked on erasure like `text`).
    resolution: str | None = Field(default=None, max_length=RESOLUTION_MAX, sa_type=Text)


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
    offer_code: str | None = None
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
    overdue_at: UtcDatetime | None = None
    complaint_updated_at: UtcDatetime | None = None
    resolution: str | None = None

    @classmethod
    def of(cls, interaction: object) -> InteractionPublic:
        """From a stored Interaction, or the column values of one just written (store.Draft)."""
        return cls.model_validate(interaction, from_attributes=True)

    @classmethod
    def of_values(cls, values: Mapping[str, Any]) -> InteractionPublic:
        """of() of an interaction given as its column values (vars() of a store.Draft): the same model,
        read from a mapping, which costs a third of reading attributes."""
        return cls.model_validate(values)


class InteractionsPublic(Page[InteractionPublic]):
    """One page of a customer's timeline, newest first; total counts every match of the filters."""


# ---- bulk import ----------------------------------------------------------------------------------

MAX_BULK = 5000


class BulkInteractions(BaseModel):
    """POST /interactions/bulk (the same shape as POST /customers/bulk).

    Rows are validated one by one, so a bad row (even one that is not an object) does not refuse the request.
    """

    model_config = ConfigDict(extra="forbid")

    rows: list[Any] = PydanticField(
        min_length=1, max_length=MAX_BULK, description="interactions as for POST /interactions"
    )


class BulkRowStatus(StrEnum):
    created = "created"
    existing = "existing"  # its external_id was imported before: nothing written
    rejected = "rejected"  # invalid, or an unknown or erased customer: nothing written


class BulkRow(BaseModel):
    index: int
    status: BulkRowStatus
    id: str | None = None
    errors: list[dict[str, str]] | None = None
    # True on a rejected row whose cause passes (the customer service did not answer about a customer this
    # service has not seen yet): send the row again as it is; its external_id makes that safe.
    retryable: bool = False


class BulkReport(BaseModel):
    created: int
    existing: int
    rejected: int
    rows: list[BulkRow]
