"""Many customers at once, for the other services (not a public route: the gateway has no rule for it).

The services that keep a replica of customer ids (interaction) ask here for the customers a bulk request
names and the replica has not seen yet: one call and one query per chunk of ids instead of a call per
customer, so a history imported right after its customers never depends on how far the replica lags.
With ``profile``, each answer also carries what the customer events carry for a replica's filters (owner,
segment, team, account-managed tier) and the scored tier: a replica's rows from before it kept those are
filled from here once (interaction's replica/backfill.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.common import CustomerStatus
from contracts.customer import team_attribute, tier_attribute
from servicekit.deps import SessionDep
from servicekit.sql import chunks
from services.customer.common import UtcDatetime
from services.customer.customers.models import MAX_BULK_ROWS, Customer
from services.customer.customers.service import event_attributes

router = APIRouter(prefix="/customers", tags=["internal"])


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BULK_ROWS, description="customer ids, any order")
    profile: bool = Field(default=False, description="also owner, segment, team and tiers (a replica's backfill)")


class CustomerRef(BaseModel):
    """What another service's replica keeps of a customer: no personal data."""

    id: str
    status: CustomerStatus
    external_ref: str | None = None
    version: int
    updated_at: UtcDatetime
    erased: bool = False
    # With profile: what the customer events carry (non-personal attributes only); None once erased.
    owner: str | None = None
    segment: str | None = None
    team: str | None = None
    tier: str | None = None  # account-managed (attributes tier or value_tier)
    scored_tier: str | None = None
    scored_tier_at: UtcDatetime | None = None


class LookupResult(BaseModel):
    customers: list[CustomerRef] = Field(description="the ids that exist, erased ones too (erased: true)")
    unknown: list[str] = Field(description="ids no customer has")


async def lookup(*, session: AsyncSession, ids: list[str], profile: bool = False) -> LookupResult:
    wanted = sorted(set(ids))
    found: dict[str, CustomerRef] = {}
    columns = (
        Customer.id,
        Customer.status,
        Customer.external_ref,
        Customer.version,
        Customer.updated_at,
        Customer.erased_at,
    )
    extra = (Customer.owner, Customer.segment, Customer.attributes, Customer.scored_tier, Customer.scored_tier_at)
    for chunk in chunks(wanted):
        rows = await session.execute(select(*columns, *(extra if profile else ())).where(col(Customer.id).in_(chunk)))
        for customer_id, status, external_ref, version, updated_at, erased_at, *more in rows:
            found[customer_id] = CustomerRef(
                id=customer_id,
                status=status,
                external_ref=None if erased_at is not None else external_ref,
                version=version,
                updated_at=updated_at,
                erased=erased_at is not None,
                **(_profile(*more) if more and erased_at is None else {}),
            )
    return LookupResult(
        customers=[found[c] for c in wanted if c in found], unknown=[c for c in wanted if c not in found]
    )


@router.post("/lookup", response_model=LookupResult, include_in_schema=False)  # internal: not in the public API
async def lookup_customers(body: LookupRequest, session: SessionDep) -> LookupResult:
    """Which of these ids are customers (and whether erased); for the other services, not the gateway."""
    return await lookup(session=session, ids=body.ids, profile=body.profile)


def _profile(
    owner: str | None, segment: str | None, attributes: dict[str, Any], scored_tier: str | None, scored_at: Any
) -> dict[str, Any]:
    carried = event_attributes(attributes or {})  # what an event of the customer would carry
    return {
        "owner": owner,
        "segment": segment,
        "team": team_attribute(carried),
        "tier": tier_attribute(carried),
        "scored_tier": scored_tier,
        "scored_tier_at": scored_at,
    }
