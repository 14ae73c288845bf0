"""Campaign tables and API shapes: the offer catalogue, campaigns, and each campaign's members.

Ids, codes, numbers and times only: a member row names the customer by id (like touches and tasks), so
nothing here needs erasing beyond what erasure already removes elsewhere. docs/campaigns.md.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field

from contracts.common import ContactChannel
from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.retention.campaigns.churn import ChurnFilter
from services.retention.db import RetentionTable, UtcDatetime, new_id
from services.retention.sequences.core import SequenceDef, TouchStep


def _at(*, nullable: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


class OfferKind(StrEnum):
    discount_percent = "discount_percent"  # value: percent off the next order
    discount_amount = "discount_amount"  # value: an amount off the next order
    free_shipping = "free_shipping"
    loyalty_points = "loyalty_points"  # value: bonus points booked on redemption
    gift = "gift"
    service_upgrade = "service_upgrade"  # e.g. a priority support period


class CampaignStatus(StrEnum):
    scheduled = "scheduled"  # waiting for its start time
    launched = "launched"  # audience drawn, holdout set aside, touches sent or blocked
    cancelled = "cancelled"  # stopped before launch


# ---- tables -------------------------------------------------------------------------------------------


class Offer(RetentionTable, table=True):
    __tablename__ = "offers"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    code: str = Field(max_length=60, unique=True)  # the sender's and ERP's name for it
    name: str = Field(max_length=200)
    kind: str = Field(max_length=30)
    value: float | None = None  # percent, amount or points, by kind
    cost_per_touch: float = 0.0  # what sending it costs (postage, SMS, agency fee)
    cost_per_redemption: float = 0.0  # what the organisation gives up when it is used
    valid_days: float = 30.0  # how long after the touch the offer can be redeemed
    active: StrictBool = True
    created_at: datetime = _at()


class Campaign(RetentionTable, table=True):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status_starts", "status", "starts_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    offer_id: str = Field(max_length=36)
    channel: str = Field(max_length=20)
    template: str = Field(default="", max_length=100)
    segment_id: str = Field(max_length=60)  # the scoring service's saved segment (the audience)
    # Only customers in these loyalty member tiers ("none": below the lowest); empty: every tier.
    member_tiers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Only customers whose latest churn matches (churn.ChurnFilter: reasons, when, value lost); null: any.
    churn: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    holdout_share: float = 0.1
    starts_at: datetime = _at()
    measure_days: float = 30.0  # outcomes count from launch for this long
    # A multi-step campaign: a sequence definition (sequences.core.SequenceDef) each treated member runs;
    # null: one touch per member at launch.
    sequence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = Field(default=CampaignStatus.scheduled.value, max_length=20)
    version: int = 0
    audience: int = 0
    treated: int = 0
    holdout: int = 0
    reached: int = 0
    blocked: int = 0
    blocked_by: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    launched_at: datetime | None = _at(nullable=True)
    created_at: datetime = _at()
    updated_at: datetime = _at()


class CampaignMember(RetentionTable, table=True):
    """One customer of a campaign's audience: treated (touched or blocked, with the verdict) or holdout."""

    __tablename__ = "campaign_members"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_members_customer"),
        Index("ix_campaign_members_customer", "customer_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    campaign_id: str = Field(max_length=36)
    customer_id: str = Field(max_length=100)
    arm: str = Field(max_length=10)  # treated | holdout
    verdict: str | None = Field(default=None, max_length=30)  # allowed or the block reason; null in the holdout
    touch_id: str | None = Field(default=None, max_length=36)  # the recorded touch (allowed or blocked)
    touches: int = 0  # touches sent (allowed): one at most for a one-touch campaign, one per step for a sequence
    enrolled_at: datetime = _at()


class OfferRedemption(RetentionTable, table=True):
    """An order that carried an offer's code (an exact redemption), from interaction.recorded. Ids, codes,
    numbers and times only, like the read model's facts; the report matches it to the campaign's offer."""

    __tablename__ = "offer_redemptions"
    __table_args__ = (Index("ix_offer_redemptions_customer_code", "customer_id", "offer_code", "at"),)

    event_id: str = Field(primary_key=True, max_length=200)  # the interaction.recorded event (fact_events.event_id)
    customer_id: str = Field(max_length=100)
    offer_code: str = Field(max_length=60)
    amount: float | None = None
    at: datetime = _at()


# ---- API shapes -----------------------------------------------------------------------------------------

_CODE = r"^[a-z0-9][a-z0-9_.-]*$"


class OfferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = PydanticField(min_length=1, max_length=60, pattern=_CODE)
    name: str = PydanticField(min_length=1, max_length=200)
    kind: OfferKind
    value: float | None = PydanticField(None, ge=0, le=1e9, description="percent, amount or points, by kind")
    cost_per_touch: float = PydanticField(0.0, ge=0, le=1e6, description="cost of sending it once")
    cost_per_redemption: float = PydanticField(0.0, ge=0, le=1e9, description="cost of one redemption")
    valid_days: float = PydanticField(30.0, gt=0, le=3650, description="redeemable this long after the touch")

    @model_validator(mode="after")
    def _percent(self) -> OfferCreate:
        if self.kind is OfferKind.discount_percent and (self.value is None or not 0 < self.value <= 100):
            raise ValueError("value: a percent discount needs a value above 0 and at most 100")
        return self


class OfferPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    kind: OfferKind
    value: float | None
    cost_per_touch: float
    cost_per_redemption: float
    valid_days: float
    active: bool
    created_at: UtcDatetime


class OffersPublic(Page[OfferPublic]):
    pass


# The audience is a saved segment or a filter, exactly one of them (null counts as not given): stated in the
# document so a generated client and the API fuzz send one.
ONE_AUDIENCE = {
    "oneOf": [
        {"required": ["segment_id"], "properties": {"segment_id": {"type": "string"}}},
        {"required": ["filter"], "properties": {"filter": {"type": "array"}}},
    ]
}


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_AUDIENCE)

    name: str = PydanticField(min_length=1, max_length=200)
    offer_id: str = PydanticField(min_length=1, max_length=36)
    channel: ContactChannel
    template: str = PydanticField("", max_length=100, description="the sender's template name")
    segment_id: str | None = PydanticField(
        None, min_length=1, max_length=60, description="a saved segment (POST /segments); or give filter"
    )
    filter: list[Any] | None = PydanticField(
        None, description="segment filter conditions [{field, op, value}] (GET /segments/fields); saved as a segment"
    )
    member_tiers: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = PydanticField(
        default_factory=list,
        max_length=20,
        description="only customers in these loyalty member tiers (none: below the lowest tier); empty: all",
    )
    churn: ChurnFilter | None = PydanticField(
        None, description="only customers whose latest churn had one of these reasons, in this window, with this value"
    )
    holdout_share: float = PydanticField(0.1, ge=0, le=0.5, description="share of the audience held back")
    starts_at: datetime | None = PydanticField(None, description="when to launch; default now")
    measure_days: float = PydanticField(30.0, gt=0, le=365, description="outcomes count this long after launch")
    sequence: SequenceDef | None = PydanticField(
        None,
        description="steps each treated member runs (offer, wait, reminder unless redeemed...); "
        "its touch steps send the offer. Default: one touch per member at launch",
    )

    @model_validator(mode="after")
    def _one_audience(self) -> CampaignCreate:
        if self.sequence is not None and not any(isinstance(s, TouchStep) for s in self.sequence.steps):
            raise ValueError("sequence.steps: a campaign's sequence needs at least one touch step (the offer)")
        if (self.segment_id is None) == (self.filter is None):
            raise ValueError("segment_id: give exactly one of segment_id and filter")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at: must carry a time zone")
        return self


class CampaignPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    offer_id: str
    channel: str
    template: str
    segment_id: str
    member_tiers: list[str]
    churn: ChurnFilter | None = None
    holdout_share: float
    starts_at: UtcDatetime
    measure_days: float
    sequence: SequenceDef | None = None
    status: CampaignStatus
    audience: int
    treated: int
    holdout: int
    reached: int
    blocked: int
    blocked_by: dict[str, int]
    launched_at: UtcDatetime | None
    created_at: UtcDatetime


class CampaignsPublic(Page[CampaignPublic]):
    pass


class CampaignMemberPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    group: str
    verdict: str | None
    touch_id: str | None
    enrolled_at: UtcDatetime


class CampaignMembersPublic(Page[CampaignMemberPublic]):
    pass


class GroupOutcomes(BaseModel):
    customers: int
    won_back: int = PydanticField(description="bought, or came back to active or won_back, within the window")
    churned: int = PydanticField(description="changed to churned within the window")
    value: float = PydanticField(description="order value within the window")
    won_back_rate: float | None


class UpliftPublic(BaseModel):
    difference: float = PydanticField(description="treated minus holdout won-back rate")
    low: float
    high: float
    confidence: float
    p_value: float | None
    method: str = PydanticField(description="newcombe-wilson: Newcombe's hybrid score interval of two Wilson intervals")


class CampaignReport(BaseModel):
    campaign_id: str
    status: CampaignStatus
    launched_at: UtcDatetime | None
    window_end: UtcDatetime | None = PydanticField(description="outcomes count from launch until this time")
    audience: int
    reached: int = PydanticField(description="treated customers the touch was sent to")
    blocked: int = PydanticField(description="treated customers the contact policy blocked")
    blocked_by: dict[str, int]
    pending: int = PydanticField(
        0, description="treated customers of a sequence campaign whose first touch has not run yet"
    )
    touches: int = PydanticField(0, description="touches sent: one per reached customer, or one per sequence step")
    redeemed: int = PydanticField(description="reached customers who bought while the offer was valid")
    redeemed_exact: int = PydanticField(
        0, description="of the redeemed, those whose order carried the offer's code (the others are attributed)"
    )
    treated: GroupOutcomes
    holdout: GroupOutcomes
    cost: float
    value_won_back: float = PydanticField(description="the treated group's order value within the window")
    incremental_value: float | None
    roi: float | None = PydanticField(description="(value won back - cost) / cost")
    incremental_roi: float | None
    uplift: UpliftPublic | None = PydanticField(description="null until both groups have customers")
