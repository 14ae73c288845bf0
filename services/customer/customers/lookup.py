"""Many customers at once, for the other services (not a public route: the gateway has no rule for it).

The services that keep a replica of customer ids (interaction) ask here for the customers a bulk request
names and the replica has not seen yet: one call and one query per chunk of ids instead of a call per
customer, so a history imported right after its customers never depends on how far the replica lags.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.common import CustomerStatus
from servicekit.deps import SessionDep
from servicekit.sql import chunks
from services.customer.common import UtcDatetime
from services.customer.customers.models import MAX_BULK_ROWS, Customer

router = APIRouter(prefix="/customers", tags=["internal"])


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BULK_ROWS, description="customer ids, any order")


class CustomerRef(BaseModel):
    """What another service's replica keeps of a customer: no personal data."""

    id: str
    status: CustomerStatus
    external_ref: str | None = None
    version: int
    updated_at: UtcDatetime
    erased: bool = False


class LookupResult(BaseModel):
    customers: list[CustomerRef] = Field(description="the ids that exist, erased ones too (erased: true)")
    unknown: list[str] = Field(description="ids no customer has")


async def lookup(*, session: AsyncSession, ids: list[str]) -> LookupResult:
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
    for chunk in chunks(wanted):
        rows = await session.execute(select(*columns).where(col(Customer.id).in_(chunk)))
        for customer_id, status, external_ref, version, updated_at, erased_at in rows:
            found[customer_id] = CustomerRef(
                id=customer_id,
                status=status,
                external_ref=None if erased_at is not None else external_ref,
                version=version,
                updated_at=updated_at,
                erased=erased_at is not None,
            )
    return LookupResult(
        customers=[found[c] for c in wanted if c in found], unknown=[c for c in wanted if c not in found]
    )


@router.post("/lookup", response_model=LookupResult, include_in_schema=False)  # internal: not in the public API
async def lookup_customers(body: LookupRequest, session: SessionDep) -> LookupResult:
    """Which of these ids are customers (and whether erased); for the other services, not the gateway."""
    return await lookup(session=session, ids=body.ids)
