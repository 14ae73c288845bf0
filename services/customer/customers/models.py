"""Customer tables and API shapes.

Contacts: ``email`` and ``phone`` are the customer's primary e-mail address and phone number (the
fields every client knows); ``contacts`` lists any further ones as ``{kind: email|phone|address,
value, label}``. All of them are personal data: they never go into events and erasure clears them.

Tags and attributes live as JSON on the customer (read in one row) and, for filtering, once more in
``customer_tags`` and ``customer_attributes`` (kept in step by service.py in the same transaction).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
    validate_email,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, Column, Date, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from contracts.common import CustomerStatus
from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import null_refused
from services.customer.common import CustomerTable, UtcDatetime, dt_column
from services.customer.customers import attributes as attrs
from services.customer.customers.documented import NAME_PATTERN, TAG_PATTERN, attributes_schema
from services.customer.status.lifecycle import ChurnReason, check_initial
from services.customer.status.models import ChurnReasonCode

MAX_TAGS = 50
MAX_CONTACTS = 20
MAX_BULK_ROWS = 5000
ERASED_NAME = "erased"


class CustomerKind(StrEnum):
    person = "person"
    company = "company"


class ContactKind(StrEnum):
    email = "email"
    phone = "phone"
    address = "address"


# ---- field types ----------------------------------------------------------------------------------


def _attribute_key(key: str) -> str:
    try:
        attrs.check_key(key)
    except attrs.InvalidAttribute as exc:
        raise PydanticCustomError("attribute_name", exc.message) from None
    return key


def _attribute_value(value: Any) -> Any:
    try:
        attrs.value_type("", value)
    except attrs.InvalidAttribute as exc:
        raise PydanticCustomError("attribute_value", exc.message) from None
    return value


def _attribute_patch_value(value: Any) -> Any:
    return None if value is None else _attribute_value(value)


def _tag(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 50 or any(ord(c) < 32 for c in value):
        raise PydanticCustomError("tag", "Tags are 1-50 printable characters")
    return value


def _name_not_null(schema: dict[str, Any]) -> None:
    null_refused(schema)
    schema["pattern"] = NAME_PATTERN


def _unique_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))  # keeps the first occurrence's order


AttributeKey = Annotated[str, AfterValidator(_attribute_key)]
# The dict key becomes part of the error location, so a bad value is reported as "attributes.<name>".
AttributeValue = Annotated[Any, AfterValidator(_attribute_value)]
AttributePatchValue = Annotated[Any, AfterValidator(_attribute_patch_value)]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue], AfterValidator(attrs.validate), WithJsonSchema(attributes_schema(patch=False))
]
PatchAttributes = Annotated[dict[AttributeKey, AttributePatchValue], WithJsonSchema(attributes_schema(patch=True))]
Tag = Annotated[str, AfterValidator(_tag), WithJsonSchema({"type": "string", "pattern": TAG_PATTERN})]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique_tags)]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ContactKind
    value: str = Field(min_length=1, max_length=500)
    label: str | None = Field(default=None, max_length=50, description="e.g. work, home, billing")

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Contact:
        if self.kind == ContactKind.email:
            try:
                self.value = validate_email(self.value)[1]
            except ValueError:
                raise PydanticCustomError("value_error", "Not a valid e-mail address") from None
        elif self.kind == ContactKind.phone and (len(self.value) > 40 or not any(c.isdigit() for c in self.value)):
            raise PydanticCustomError("value_error", "A phone number has digits and at most 40 characters")
        return self


Contacts = Annotated[list[Contact], Field(max_length=MAX_CONTACTS)]


# ---- tables ------------------------------------------------------------------------------------------


class CustomerBase(SQLModel):
    kind: CustomerKind = Field(default=CustomerKind.person, sa_type=String(20))
    name: str = Field(min_length=1, max_length=200, schema_extra={"json_schema_extra": {"pattern": NAME_PATTERN}})
    email: EmailStr | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    external_ref: str | None = Field(
        default=None, min_length=1, max_length=100, description="the ERP's customer number; unique"
    )
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100, description="the account manager")


class Customer(CustomerTable, CustomerBase, table=True):
    __tablename__ = "customers"
    # Keyset pagination reads (sort key, id) in order.
    __table_args__ = (
        Index("ix_customers_created_at_id", "created_at", "id"),
        Index("ix_customers_name_id", "name", "id"),
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    external_ref: str | None = Field(default=None, max_length=100, unique=True, index=True)
    segment: str | None = Field(default=None, max_length=100, index=True)
    owner: str | None = Field(default=None, max_length=100, index=True)
    contacts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: CustomerStatus = Field(default=CustomerStatus.active, sa_type=String(20), index=True)
    status_changed_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))
    # The most recent churn; kept after a win-back so the churn label stays visible.
    churned_at: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    churn_reason: ChurnReason | None = Field(default=None, sa_type=String(30))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The value tier as last scored (score.updated on crm.scoring.v1) and when it was computed, so an older
    # score arriving late changes nothing. An account-managed tier attribute overrides it in reports.
    scored_tier: str | None = Field(default=None, sa_type=String(20))
    scored_tier_at: datetime | None = Field(default=None, sa_column=dt_column(nullable=True))
    version: int = 1
    created_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))
    erased_at: datetime | None = Field(default=None, sa_column=dt_column(nullable=True))


class CustomerTag(CustomerTable, table=True):
    """One row per (customer, tag): the tag filter's index."""

    __tablename__ = "customer_tags"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    tag: str = Field(max_length=50, primary_key=True, index=True)


class CustomerAttribute(CustomerTable, table=True):
    """One row per (customer, attribute) with a canonical text value: the attribute filter's index."""

    __tablename__ = "customer_attributes"
    __table_args__ = (Index("ix_customer_attributes_key_value", "key", "value"),)

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    key: str = Field(max_length=64, primary_key=True)
    type: str = Field(sa_type=String(10))
    value: str = Field(max_length=attrs.MAX_STRING)


class IdempotencyKey(CustomerTable, table=True):
    """An Idempotency-Key seen on POST /customers: the request it came with and the customer it made."""

    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    customer_id: str = Field(max_length=36, index=True)
    status_code: int
    # Indexed for the hourly purge of expired keys (CUSTOMER_IDEMPOTENCY_KEY_TTL_HOURS).
    created_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False, index=True))


class BulkReply(CustomerTable, table=True):
    """An Idempotency-Key seen on a bulk route (POST /customers/status/bulk): the request and its report,
    so a retried request answers the first report and changes nothing again. Purged like IdempotencyKey."""

    __tablename__ = "bulk_replies"

    key: str = Field(primary_key=True, max_length=200)
    route: str = Field(max_length=50)
    request_hash: str = Field(max_length=64)
    report: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False, index=True))


# ---- API shapes ---------------------------------------------------------------------------------------


class CustomerCreate(CustomerBase):
    # Defaults are validated too, so a churned customer left without its churn details is reported.
    model_config = ConfigDict(validate_default=True)  # type: ignore[assignment]

    contacts: Contacts = Field(default_factory=list)
    status: CustomerStatus = CustomerStatus.active
    churned_at: date | None = Field(default=None, description="churned (or won_back) customers: the last churn")
    churn_reason: ChurnReasonCode | None = None
    churn_note: str | None = Field(
        default=None, max_length=1000, description="free text on the last churn, kept in the status history"
    )
    tags: Tags = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)

    @field_validator("churned_at", "churn_reason")
    @classmethod
    def _churn_details_fit_status(cls, value: Any, info: ValidationInfo) -> Any:
        status = info.data.get("status")
        if status is None:  # the status itself is invalid and already reported
            return value
        if info.field_name == "churned_at":
            problems = check_initial(status, reason=None, churned_at=value, today=utc_now().date())
        else:
            problems = check_initial(
                status, reason=value, churned_at=info.data.get("churned_at"), today=utc_now().date()
            )
        for problem in problems:
            if problem.field == info.field_name:
                raise PydanticCustomError("churn_details", problem.message)
        return value

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("string_too_short", "Must not be blank")
        return value

    @field_validator("external_ref", "segment", "owner")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None


class CustomerUpdate(BaseModel):
    """PATCH body: only the fields sent change; null clears an optional field.

    ``attributes`` is merged (a key set to null is removed); ``tags`` and ``contacts`` are replaced.
    ``version`` may stand in for the If-Match header. The status changes through POST .../status.
    """

    model_config = ConfigDict(extra="forbid")

    # Optional, but never null (a null is refused): the schema shows no null for these five.
    kind: CustomerKind | None = Field(default=None, schema_extra={"json_schema_extra": null_refused})
    name: str | None = Field(
        default=None, min_length=1, max_length=200, schema_extra={"json_schema_extra": _name_not_null}
    )
    email: EmailStr | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    contacts: Contacts | None = Field(default=None, schema_extra={"json_schema_extra": null_refused})
    external_ref: str | None = Field(default=None, min_length=1, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    tags: Tags | None = Field(default=None, schema_extra={"json_schema_extra": null_refused})
    attributes: PatchAttributes | None = Field(default=None, schema_extra={"json_schema_extra": null_refused})
    version: int | None = Field(default=None, ge=1, description="the version you read (instead of If-Match)")

    @field_validator("kind", "name", "contacts", "tags", "attributes")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("null", "Must not be null")
        return value

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("string_too_short", "Must not be blank")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, except the version."""
        return {name: getattr(self, name) for name in self.model_fields_set if name != "version"}


class ContactPublic(BaseModel):
    kind: ContactKind
    value: str
    label: str | None = None


class CustomerPublic(BaseModel):
    id: str
    kind: CustomerKind
    name: str
    email: str | None
    phone: str | None
    contacts: list[ContactPublic]
    external_ref: str | None
    segment: str | None
    owner: str | None
    tags: list[str]
    attributes: dict[str, Any]
    status: CustomerStatus
    status_changed_at: UtcDatetime
    churned_at: date | None
    churn_reason: ChurnReasonCode | None
    version: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
    erased_at: UtcDatetime | None = Field(description="set once the customer's personal data was erased")

    @classmethod
    def of(cls, customer: Customer) -> CustomerPublic:
        return cls.model_validate(customer, from_attributes=True)


class CustomersPage(Page[CustomerPublic]):
    """One page of customers. ``total`` counts every match of the filters; ``next_cursor`` (null on the
    last page) fetches the next page with the same filters and sort."""

    next_cursor: str | None


class BulkImport(BaseModel):
    # Any, not dict: a row that is not even an object is rejected on its own, not the whole request.
    rows: list[Any] = Field(min_length=1, max_length=MAX_BULK_ROWS, description="customers as for POST /customers")


class BulkRowResult(BaseModel):
    index: int
    status: str  # created | existing | rejected
    id: str | None = None
    errors: list[dict[str, Any]] | None = None


class BulkReport(BaseModel):
    created: int
    existing: int
    rejected: int
    rows: list[BulkRowResult]
