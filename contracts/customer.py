"""Events published by the customer service on crm.customer.v1.

They carry ids and classification codes only, never personal data: no names or contact details, no
tags, no external reference and only the attributes the customer service declares non-personal
(CUSTOMER_ERASURE_KEEP_ATTRIBUTES). Personal data stays in the customer master, so erasing it there
leaves no copy in Kafka's immutable log (docs/security/privacy.md).

Schema change (additive, privacy): ``external_ref`` and ``tags`` stay in the schema for readers of
older events but producers no longer fill them (always null / []); ``attributes`` holds only the
non-personal ones; ``external_ref_set`` (new) says whether the customer has an external reference,
which a consumer that needs the value reads from the customer service (GET /customers/{id}), so the
value lives only in stores that erasure clears. ``external_ref_set`` is null on events written before
the change, whose ``external_ref`` still holds the value.
"""

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from contracts import topics
from contracts.common import (
    ConsentSource,
    ConsentStatus,
    ContactChannel,
    CustomerStatus,
    LegalBasis,
)
from servicekit.events.envelope import EventData


class CustomerEvent(EventData):
    topic = topics.CUSTOMER
    customer_id: str


class CustomerCreated(CustomerEvent):
    event_type = "customer.created"
    kind: str
    status: CustomerStatus
    external_ref: str | None = None  # deprecated: never filled since external_ref_set (personal data)
    # Whether the customer has an external reference (read it from the customer service); None: an old event.
    external_ref_set: bool | None = None
    segment: str | None = None
    owner: str | None = None
    tags: list[str] = []  # deprecated: always empty (tags may be personal data)
    attributes: dict[str, Any] = {}  # only the attributes declared non-personal
    created_at: datetime
    # Customers imported with their history: the day and reason code of their last churn.
    churned_at: date | None = None
    churn_reason: str | None = None
    side: str | None = None  # of the churn reason: company | customer | unknown
    voluntary: bool | None = None  # of the churn reason: false for dropped, relocation, closure


class CustomerUpdated(CustomerEvent):
    event_type = "customer.updated"
    version: int = 1
    changed: list[str] = []
    kind: str | None = None
    external_ref: str | None = None  # deprecated: never filled since external_ref_set (personal data)
    # Whether the customer has an external reference now (read it from the customer service); None: an old event.
    external_ref_set: bool | None = None
    segment: str | None = None
    owner: str | None = None
    tags: list[str] = []  # deprecated: always empty (tags may be personal data)
    attributes: dict[str, Any] = {}  # only the attributes declared non-personal


class CustomerStatusChanged(CustomerEvent):
    event_type = "customer.status_changed"
    previous_status: CustomerStatus | None
    status: CustomerStatus
    reason: str | None = None  # churn reason code (services.customer.status.lifecycle.ChurnReason) when churned
    side: str | None = None  # of the churn reason: company | customer | unknown
    voluntary: bool | None = None  # of the churn reason: false for dropped, relocation, closure
    changed_at: datetime
    churned_at: date | None = None  # the day the customer churned (may lie before changed_at)
    version: int | None = None  # the customer's version after this change


class CustomerErased(CustomerEvent):
    event_type = "customer.erased"
    erased_at: datetime


class ChannelConsent(BaseModel):
    """One channel's consent: codes and a timestamp only."""

    status: ConsentStatus
    legal_basis: LegalBasis
    source: ConsentSource
    at: datetime  # when the customer gave or withdrew it (as the source reported)


class FrequencyCap(BaseModel):
    """At most ``max_touches`` touches in any rolling ``window_days``."""

    max_touches: int
    window_days: float


class QuietHours(BaseModel):
    """Local wall-clock times ("HH:MM") in the customer's time zone; ``start`` > ``end`` spans midnight."""

    start: str
    end: str


class ConsentChanged(CustomerEvent):
    """The customer's consent or contact preferences changed (docs/consent.md).

    Carries the whole current state (every recorded channel, the time zone and the per-customer policy
    overrides) with a version, so a consumer keeps the latest by version whatever the delivery order.
    Codes and an IANA time-zone name only: no address, number or free text.
    """

    event_type = "consent.changed"
    version: int
    changed: list[ContactChannel] = []  # the channels whose consent changed with this event
    channels: dict[ContactChannel, ChannelConsent] = {}
    timezone: str | None = None  # IANA name, e.g. Europe/Berlin
    frequency_cap: FrequencyCap | None = None  # overrides the tier's cap
    quiet_hours: QuietHours | None = None  # overrides the default quiet hours
    changed_at: datetime


class LoyaltyTierChanged(CustomerEvent):
    """The customer's loyalty member tier changed (docs/loyalty-points.md): tier codes and point counts
    only, so campaigns can target a tier and offers can use it. ``tier`` is null when the customer no
    longer reaches the lowest tier; ``benefits`` are the new tier's benefit codes."""

    event_type = "loyalty.tier_changed"
    tier: str | None
    previous_tier: str | None
    benefits: list[str] = []
    lifetime_points: int
    balance: int
    changed_at: datetime


# Attributes with an agreed meaning, read by the services that keep the customer's profile for reports.
TEAM_ATTRIBUTE = "team"  # the customer's team: a text attribute
TIER_ATTRIBUTES = ("tier", "value_tier")  # an account-managed value tier, overriding the scored one
VALUE_TIERS = ("platinum", "gold", "iron", "lead")  # the scoring service's value tiers, best first


def team_attribute(attributes: dict[str, Any]) -> str | None:
    """The customer's team from its attributes: the text attribute ``team`` (1 to 100 characters), else None."""
    team = attributes.get(TEAM_ATTRIBUTE)
    return team if isinstance(team, str) and 0 < len(team) <= 100 else None


def tier_attribute(attributes: dict[str, Any]) -> str | None:
    """An account-managed tier from the customer's attributes (tier or value_tier), if it names one."""
    for name in TIER_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and value.lower() in VALUE_TIERS:
            return value.lower()
    return None


MODELS = (
    CustomerCreated,
    CustomerUpdated,
    CustomerStatusChanged,
    CustomerErased,
    ConsentChanged,
    LoyaltyTierChanged,
)
