"""The local customer replica's table: what this service knows of each customer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, false
from sqlmodel import Field

from servicekit.clock import utc_now
from servicekit.types import UtcDateTime
from services.interaction.db import InteractionTable


class KnownCustomer(InteractionTable, table=True):
    """What this service knows of a customer, built from crm.customer.v1 (ids, refs, status; no personal data)."""

    __tablename__ = "known_customers"

    customer_id: str = Field(primary_key=True, max_length=100)
    external_ref: str | None = Field(default=None, max_length=100, index=True)
    status: str | None = Field(default=None, sa_type=String(20))
    # The account manager, from the customer's events (the complaint desk lists an agent's customers by it).
    owner: str | None = Field(default=None, max_length=100, index=True)
    # Whether owner has been read: rows from before the column are filled from the customer service once
    # (replica/backfill.py); every event and snapshot since sets it.
    owner_known: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The complaint reports' other filters. Segment and team (the `team` attribute) from the customer's
    # events; the value tier is the account-managed one (attributes tier/value_tier) from those events,
    # else the scored one from score.updated (crm.scoring.v1), as of scored_tier_at. Blanked on erasure.
    segment: str | None = Field(default=None, max_length=100, index=True)
    team: str | None = Field(default=None, max_length=100, index=True)
    managed_tier: str | None = Field(default=None, sa_type=String(20))
    scored_tier: str | None = Field(default=None, sa_type=String(20))
    scored_tier_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Whether segment, team and managed tier have been read: rows from before these columns (and rows a
    # score created before any customer event) are filled from the customer service once (replica/backfill.py).
    profile_known: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Guards against out-of-order events: the customer version and the time of the status held here.
    version: int = 0
    status_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    erased: bool = False
    erased_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # When this service sent its erasure receipt (erasure.confirmed): exactly once per customer.
    erasure_confirmed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
