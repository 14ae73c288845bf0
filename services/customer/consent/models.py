"""Consent and contact preferences (docs/consent.md): tables and API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic import Field as PydField
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, String
from sqlmodel import Field

from contracts.common import ConsentSource, ConsentStatus, ContactChannel, LegalBasis
from servicekit.clock import utc_now
from servicekit.pagination import Page
from services.customer.common import CustomerTable, UtcDatetime, dt_column

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
    at: datetime = Field(sa_column=dt_column(nullable=False))  # when the customer gave or withdrew it
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


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
    updated_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


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
    at: datetime = Field(sa_column=dt_column(nullable=False))
    version: int
    recorded_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False))


class ConsentImportKey(CustomerTable, table=True):
    """An Idempotency-Key of POST /customers/consent/bulk: the request's hash and the report it got."""

    __tablename__ = "consent_import_keys"

    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=dt_column(nullable=False, index=True))


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


class ConsentChangesPage(Page[ConsentChangePublic]):
    pass


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
