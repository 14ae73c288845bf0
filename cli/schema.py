"""The CLI's own copy of the rules the services apply to imported rows, so --dry-run can check a whole file
without writing anything (the CLI reaches services over HTTP only and never imports them).

The enumerations the event contracts define (customer status, interaction type, severity) come from
contracts, the services' own source. The others and the limits mirror the customer and
interaction services' request models; a unit test compares them with the services' so a change there
fails the build until it is copied here. The services stay the judge: a row that passes here can still
be rejected by them (an unknown customer, a reference already taken), and that reason reaches the
rejects file too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.common import CustomerStatus, InteractionType, Severity


class CustomerKind(StrEnum):
    person = "person"
    company = "company"


class ChurnReason(StrEnum):
    product_quality = "product_quality"
    poor_service = "poor_service"
    staff_turnover = "staff_turnover"
    lack_of_innovation = "lack_of_innovation"
    deliberately_dropped = "deliberately_dropped"
    price = "price"
    competitor = "competitor"
    changed_needs = "changed_needs"
    bad_faith_departure = "bad_faith_departure"
    relocation = "relocation"
    closure = "closure"
    other = "other"


class Initiator(StrEnum):
    customer = "customer"
    company = "company"


class SurveyKind(StrEnum):
    nps = "nps"
    csat = "csat"


class ComplaintCategory(StrEnum):
    product_quality = "product_quality"
    service = "service"
    delivery = "delivery"
    billing = "billing"
    staff = "staff"
    other = "other"


SCORE_RANGES = {SurveyKind.nps: (0, 10), SurveyKind.csat: (1, 5)}
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_STRING = 500
MAX_TAGS = 50
TEXT_MAX = 5_000
CHURN_DETAIL_STATUSES = frozenset({CustomerStatus.churned, CustomerStatus.won_back})


def _attributes(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"At most {MAX_ATTRIBUTES} attributes")
    for key, item in value.items():
        if not ATTRIBUTE_KEY.match(key):
            raise ValueError(f"Attribute name {key!r}: a letter, then up to 63 letters, digits or underscores")
        if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_STRING:
            raise ValueError(f"Attribute {key}: strings hold at most {MAX_ATTRIBUTE_STRING} characters")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise ValueError(f"Attribute {key}: a string, number or boolean")
    return value


def _tags(value: list[str]) -> list[str]:
    for tag in value:
        if not tag.strip() or len(tag) > 50 or any(ord(c) < 32 for c in tag):
            raise ValueError("Tags are 1-50 printable characters")
    return value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _not_future(value: date | None) -> date | None:
    if value is not None and value > datetime.now(UTC).date():
        raise ValueError("Must not lie in the future")
    return value


PastDate = Annotated[date, AfterValidator(_not_future)]


class CustomerRow(BaseModel):
    """A row of `crm import customers` (POST /customers/bulk)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: CustomerKind = CustomerKind.person
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=40)
    external_ref: str | None = Field(default=None, min_length=1, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    status: CustomerStatus = CustomerStatus.active
    churned_at: PastDate | None = None
    churn_reason: ChurnReason | None = None
    churn_note: str | None = Field(default=None, max_length=1000)
    tags: Annotated[list[str], Field(max_length=MAX_TAGS), AfterValidator(_tags)] = Field(default_factory=list)
    attributes: Annotated[dict[str, Any], AfterValidator(_attributes)] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _churn_details(self) -> CustomerRow:
        if self.status == CustomerStatus.churned:
            missing = [f for f in ("churn_reason", "churned_at") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a churned customer needs {' and '.join(missing)}")
        elif self.status not in CHURN_DETAIL_STATUSES and (self.churn_reason or self.churned_at):
            raise ValueError("churn_reason and churned_at only for a churned or won_back customer")
        return self


class InteractionRow(BaseModel):
    """A row of `crm import interactions` (POST /interactions/bulk); customer_ref is resolved by the CLI."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, min_length=1, max_length=100)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=100)
    type: InteractionType
    channel: str | None = Field(default=None, min_length=1, max_length=40)
    initiated_by: Initiator | None = None
    occurred_at: Annotated[datetime, AfterValidator(_utc)] | None = None
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    order_id: str | None = Field(default=None, min_length=1, max_length=100)
    severity: Severity | None = None
    category: str | None = Field(default=None, min_length=1, max_length=100)
    rating: int | None = Field(default=None, ge=1, le=5)
    sentiment: float | None = Field(default=None, ge=-1, le=1)
    survey: SurveyKind | None = None
    score: int | None = None
    text: str | None = Field(default=None, max_length=TEXT_MAX)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _cross_fields(self) -> InteractionRow:
        if self.customer_id is None and self.customer_ref is None:
            raise ValueError("customer_id or customer_ref: Field required")
        if self.customer_id is not None and self.customer_ref is not None:
            raise ValueError("customer_id or customer_ref: one of them, not both")
        problems: list[str] = []
        if self.type == InteractionType.purchase and self.amount is None:
            problems.append("amount: required for a purchase")
        if self.amount is not None and self.currency is None:
            problems.append("currency: required with an amount")
        if self.type == InteractionType.complaint:
            if self.severity is None:
                problems.append("severity: required for a complaint")
            if self.category is not None and self.category.strip().lower() not in set(ComplaintCategory):
                problems.append(f"category: must be one of: {', '.join(ComplaintCategory)}")
        if self.type == InteractionType.survey:
            if self.survey is None or self.score is None:
                problems.append("survey and score: required for a survey")
            elif not SCORE_RANGES[self.survey][0] <= self.score <= SCORE_RANGES[self.survey][1]:
                low, high = SCORE_RANGES[self.survey]
                problems.append(f"score: {self.survey.value} answers are {low}-{high}")
        elif self.survey is not None or self.score is not None:
            problems.append("survey and score: only for a survey")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class StatusRow(BaseModel):
    """A row of `crm import statuses` (POST /customers/status/bulk, or one status change per customer)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, min_length=1, max_length=100)
    customer_ref: str | None = Field(default=None, min_length=1, max_length=100)
    status: CustomerStatus
    reason: ChurnReason | None = None
    churned_at: PastDate | None = None
    note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _churn_details(self) -> StatusRow:
        if self.customer_id is None and self.customer_ref is None:
            raise ValueError("customer_id or customer_ref: Field required")
        if self.customer_id is not None and self.customer_ref is not None:
            raise ValueError("customer_id or customer_ref: one of them, not both")
        if self.status == CustomerStatus.churned:
            missing = [f for f in ("reason", "churned_at") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a churned customer needs {' and '.join(missing)}")
        return self


MODELS: dict[str, type[BaseModel]] = {"customers": CustomerRow, "interactions": InteractionRow, "statuses": StatusRow}
# The platform fields of each kind of row, in the models' order: the one list the column mapping
# (cli.mapping) and the CSV readers (cli.rows) both use. Attributes are a group (attributes.<name>).
FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name in model.model_fields if name != "attributes") for kind, model in MODELS.items()
}


def problems_of(error: ValidationError) -> list[tuple[str, str]]:
    """(field, message) for each problem: the field as the platform names it ("attributes.plan"), or ""
    for a rule across fields."""
    found: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        found.append((field, message))
    return found
