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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
    validate_email,
)
from pydantic import Field as PydField
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, BigInteger, Column, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.clock import utc_now
from servicekit.events.contracts.common import (
    ConsentSource,
    ConsentStatus,
    ContactChannel,
    CustomerStatus,
    LegalBasis,
)
from servicekit.tables import add_plumbing_tables
from servicekit.types import UtcDateTime, as_utc
from services.customer import attributes as attrs
from services.customer.lifecycle import ChurnReason, ChurnSide, canonical_reason, check_initial, facts_of
from services.customer.loyalty_points import EntryKind


class CustomerTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = CustomerTable.metadata
add_plumbing_tables(metadata)

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


def _dt(*, nullable: bool, index: bool = False) -> Any:
    return Column(UtcDateTime(), nullable=nullable, index=index)


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


def _unique_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))  # keeps the first occurrence's order


AttributeKey = Annotated[str, AfterValidator(_attribute_key)]
# The dict key becomes part of the error location, so a bad value is reported as "attributes.<name>".
AttributeValue = Annotated[Any, AfterValidator(_attribute_value)]
AttributePatchValue = Annotated[Any, AfterValidator(_attribute_patch_value)]
Attributes = Annotated[dict[AttributeKey, AttributeValue], AfterValidator(attrs.validate)]
Tag = Annotated[str, AfterValidator(_tag)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique_tags)]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
# A churn reason code; a retired code (lifecycle.LEGACY_REASONS) is read as its successor.
ChurnReasonCode = Annotated[ChurnReason, BeforeValidator(canonical_reason)]


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
    name: str = Field(min_length=1, max_length=200)
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
    status_changed_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))
    # The most recent churn; kept after a win-back so the churn label stays visible.
    churned_at: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    churn_reason: ChurnReason | None = Field(default=None, sa_type=String(30))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 1
    created_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))
    erased_at: datetime | None = Field(default=None, sa_column=_dt(nullable=True))


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


class StatusChange(CustomerTable, table=True):
    """The status history: every transition with its reason and the person's note."""

    __tablename__ = "status_changes"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), nullable=False, index=True))
    previous_status: CustomerStatus | None = Field(default=None, sa_type=String(20))
    status: CustomerStatus = Field(sa_type=String(20))
    reason: ChurnReason | None = Field(default=None, sa_type=String(30))
    churned_at: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    note: str | None = Field(default=None, sa_type=Text)  # free text: cleared by erasure
    version: int
    changed_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class IdempotencyKey(CustomerTable, table=True):
    """An Idempotency-Key seen on POST /customers: the request it came with and the customer it made."""

    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    customer_id: str = Field(max_length=36, index=True)
    status_code: int
    # Indexed for the hourly purge of expired keys (CUSTOMER_IDEMPOTENCY_KEY_TTL_HOURS).
    created_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False, index=True))


class BulkReply(CustomerTable, table=True):
    """An Idempotency-Key seen on a bulk route (POST /customers/status/bulk): the request and its report,
    so a retried request answers the first report and changes nothing again. Purged like IdempotencyKey."""

    __tablename__ = "bulk_replies"

    key: str = Field(primary_key=True, max_length=200)
    route: str = Field(max_length=50)
    request_hash: str = Field(max_length=64)
    report: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False, index=True))


class ErasureRequest(CustomerTable, table=True):
    __tablename__ = "erasure_requests"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    requested_at: datetime = Field(sa_column=_dt(nullable=False))


class ErasureReceipt(CustomerTable, table=True):
    """One service's confirmation that it erased its copy of a customer's personal data."""

    __tablename__ = "erasure_receipts"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    service: str = Field(max_length=50, primary_key=True)
    confirmed_at: datetime = Field(sa_column=_dt(nullable=False))
    summary: str = Field(default="", sa_type=Text)
    event_id: str | None = Field(default=None, max_length=200)
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


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

    kind: CustomerKind | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    contacts: Contacts | None = None
    external_ref: str | None = Field(default=None, min_length=1, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    tags: Tags | None = None
    attributes: dict[AttributeKey, AttributePatchValue] | None = None
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


class StatusChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CustomerStatus
    reason: ChurnReasonCode | None = Field(
        default=None, description="required when the status becomes churned (a code of docs/reports.md#churn-reasons)"
    )
    churned_at: date | None = Field(default=None, description="required when the status becomes churned")
    note: str | None = Field(default=None, max_length=1000, description="kept in the status history")


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


class CustomersPage(BaseModel):
    """One page of customers. ``total`` counts every match of the filters; ``next_cursor`` (null on the
    last page) fetches the next page with the same filters and sort."""

    items: list[CustomerPublic]
    total: int
    limit: int
    offset: int
    next_cursor: str | None


class StatusChangePublic(BaseModel):
    previous_status: CustomerStatus | None
    status: CustomerStatus
    reason: ChurnReasonCode | None
    churned_at: date | None
    note: str | None
    version: int
    changed_at: UtcDatetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def side(self) -> ChurnSide | None:
        """company or customer side of the churn reason (unknown for ``other``)"""
        facts = facts_of(self.reason)
        return facts.side if facts else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def voluntary(self) -> bool | None:
        """whether the customer chose to leave (false: dropped by the company, relocation, closure)"""
        facts = facts_of(self.reason)
        return facts.voluntary if facts else None


class StatusHistoryPage(BaseModel):
    items: list[StatusChangePublic]
    total: int
    limit: int
    offset: int


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


# ---- consent and contact preferences (docs/consent.md) ------------------------------------------------

MAX_CONSENT_ROWS = 5000
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class Consent(CustomerTable, table=True):
    """The customer's current consent on one channel: codes and timestamps only."""

    __tablename__ = "consents"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    channel: ContactChannel = Field(sa_type=String(10), primary_key=True)
    status: ConsentStatus = Field(sa_type=String(10))
    legal_basis: LegalBasis = Field(sa_type=String(30))
    source: ConsentSource = Field(sa_type=String(20))
    at: datetime = Field(sa_column=_dt(nullable=False))  # when the customer gave or withdrew it
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class ContactProfile(CustomerTable, table=True):
    """Per-customer contact preferences: time zone and the overrides of the tier's contact policy.

    ``version`` counts every consent or preference change: consent.changed carries it.
    """

    __tablename__ = "contact_profiles"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    timezone: str | None = Field(default=None, max_length=64)
    cap_max_touches: int | None = None
    cap_window_days: float | None = None
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    version: int = 0
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class ConsentChange(CustomerTable, table=True):
    """The consent audit trail: every change, with its source and time (erasure deletes it)."""

    __tablename__ = "consent_changes"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), nullable=False, index=True))
    # channel, status and legal basis are null on a change of the contact preferences only
    channel: ContactChannel | None = Field(default=None, sa_type=String(10))
    status: ConsentStatus | None = Field(default=None, sa_type=String(10))
    previous_status: ConsentStatus | None = Field(default=None, sa_type=String(10))
    legal_basis: LegalBasis | None = Field(default=None, sa_type=String(30))
    source: ConsentSource = Field(sa_type=String(20))
    at: datetime = Field(sa_column=_dt(nullable=False))
    version: int
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class ConsentImportKey(CustomerTable, table=True):
    """An Idempotency-Key of POST /customers/consent/bulk: the request's hash and the report it got."""

    __tablename__ = "consent_import_keys"

    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False, index=True))


def _iana_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("timezone", "not an IANA time-zone name (e.g. Europe/Berlin)") from None
    return value


TimeZoneName = Annotated[str, PydField(min_length=1, max_length=64), AfterValidator(_iana_zone)]


class FrequencyCapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_touches: int = PydField(ge=0, le=1000, description="at most this many touches ...")
    window_days: float = PydField(gt=0, le=366, description="... in any rolling window this long")


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = PydField(pattern=_HHMM, description='local time "HH:MM" when quiet hours begin')
    end: str = PydField(pattern=_HHMM, description='local time "HH:MM" when they end (before start: next day)')

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursBody:
        if self.start == self.end:
            raise PydanticCustomError("quiet_hours", "start and end must differ")
        return self


class ChannelConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: ConsentStatus
    legal_basis: LegalBasis = LegalBasis.consent
    source: ConsentSource = ConsentSource.api
    at: UtcDatetime | None = PydField(None, description="when the customer gave or withdrew it (default: now)")


class ConsentUpdate(BaseModel):
    """PUT body: the channels given are set (others keep their state); a preference field given is set
    (null clears it), one left out is kept."""

    model_config = ConfigDict(extra="forbid")
    channels: dict[ContactChannel, ChannelConsentBody] = PydField(default_factory=dict)
    timezone: TimeZoneName | None = None
    frequency_cap: FrequencyCapBody | None = None
    quiet_hours: QuietHoursBody | None = None
    source: ConsentSource = PydField(ConsentSource.api, description="source of a preference change")


class ChannelConsentPublic(BaseModel):
    status: ConsentStatus
    legal_basis: LegalBasis
    source: ConsentSource
    at: UtcDatetime
    recorded_at: UtcDatetime


class ConsentPublic(BaseModel):
    customer_id: str
    version: int = PydField(description="counts every consent or preference change; 0: none recorded")
    channels: dict[ContactChannel, ChannelConsentPublic] = PydField(
        description="recorded channels only; a channel left out has no recorded consent"
    )
    timezone: str | None
    frequency_cap: FrequencyCapBody | None
    quiet_hours: QuietHoursBody | None
    updated_at: UtcDatetime | None


class ConsentChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    channel: ContactChannel | None
    status: ConsentStatus | None
    previous_status: ConsentStatus | None
    legal_basis: LegalBasis | None
    source: ConsentSource
    at: UtcDatetime
    version: int
    recorded_at: UtcDatetime


class ConsentChangesPage(BaseModel):
    items: list[ConsentChangePublic]
    total: int
    limit: int
    offset: int


class ConsentRow(BaseModel):
    """One bulk row: a customer (by id or external_ref) and one channel's consent."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = PydField(None, min_length=1, max_length=36)
    external_ref: str | None = PydField(None, min_length=1, max_length=100)
    channel: ContactChannel
    status: ConsentStatus
    legal_basis: LegalBasis = LegalBasis.consent
    source: ConsentSource = ConsentSource.bulk_import
    at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_customer_key(self) -> ConsentRow:
        if (self.customer_id is None) == (self.external_ref is None):
            raise PydanticCustomError("customer", "give exactly one of customer_id and external_ref")
        return self


class ConsentImport(BaseModel):
    rows: list[Any] = PydField(min_length=1, max_length=MAX_CONSENT_ROWS, description="ConsentRow objects")


class ConsentRowResult(BaseModel):
    index: int
    status: str  # applied | unchanged | rejected
    customer_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ConsentImportReport(BaseModel):
    applied: int
    unchanged: int
    rejected: int
    rows: list[ConsentRowResult]


# ---- loyalty points (docs/loyalty-points.md) ------------------------------------------------------------

POINTS_SOURCE = r"^[a-z0-9_-]{1,20}$"
POINTS_REASON = r"^[a-z0-9_.:-]{1,40}$"


class PointsAccount(CustomerTable, table=True):
    """The customer's points balance (the sum of the ledger, kept in step in the same transaction),
    lifetime earned points and member tier code."""

    __tablename__ = "points_accounts"

    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), primary_key=True))
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    lifetime_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    tier: str | None = Field(default=None, max_length=30)
    entries: int = 0
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class PointsEntry(CustomerTable, table=True):
    """One ledger entry; (source, source_ref) is unique, so a replayed ERP document is applied once."""

    __tablename__ = "points_entries"
    __table_args__ = (UniqueConstraint("source", "source_ref", name="uq_points_entries_source_ref"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    customer_id: str = Field(sa_column=Column(String(36), ForeignKey("customers.id"), nullable=False, index=True))
    kind: str = Field(sa_type=String(10))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))  # signed for adjust, else positive
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str | None = Field(default=None, max_length=40)
    source: str = Field(max_length=20)
    source_ref: str = Field(max_length=100)
    occurred_at: datetime = Field(sa_column=_dt(nullable=False))
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=_dt(nullable=False))


class PointsAdjustment(BaseModel):
    """POST /customers/{id}/points: one ledger entry booked by an administrator or an integration."""

    model_config = ConfigDict(extra="forbid")
    kind: EntryKind = PydField(EntryKind.adjust, description="earn, redeem, expire or adjust")
    amount: int = PydField(
        ge=-1_000_000_000, le=1_000_000_000, description="points; positive, except adjust which is signed"
    )
    reason: str | None = PydField(None, pattern=POINTS_REASON, description="a code, e.g. goodwill, correction")
    source: str = PydField("api", pattern=POINTS_SOURCE, description="the booking system, e.g. api, erp")
    source_ref: str = PydField(
        min_length=1, max_length=100, description="the document id in that system: a repeat books nothing"
    )
    occurred_at: UtcDatetime | None = PydField(None, description="when it happened (default: now)")

    @model_validator(mode="after")
    def _amount_sign(self) -> PointsAdjustment:
        if self.kind is EntryKind.adjust and self.amount == 0:
            raise PydanticCustomError("amount", "an adjustment must not be zero")
        if self.kind is not EntryKind.adjust and self.amount <= 0:
            raise PydanticCustomError("amount", "must be positive for earn, redeem and expire")
        return self


class PointsEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: EntryKind
    amount: int
    balance_after: int
    reason: str | None
    source: str
    source_ref: str
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime


class TierPublic(BaseModel):
    code: str
    min_lifetime_points: int
    benefits: list[str]


class PointsPublic(BaseModel):
    customer_id: str
    balance: int
    lifetime_points: int
    tier: TierPublic | None = PydField(description="null until the first ledger entry, or below every tier")
    next_tier: TierPublic | None = PydField(description="the next tier up, if any")
    items: list[PointsEntryPublic] = PydField(description="the ledger, newest first")
    total: int
    limit: int
    offset: int


class PointsBooked(BaseModel):
    """POST answer: the entry (the earlier one on a repeat) and the balance after the request."""

    entry: PointsEntryPublic
    replayed: bool = PydField(description="true when this source_ref was booked before: nothing changed")
    balance: int
    lifetime_points: int
    tier: str | None
