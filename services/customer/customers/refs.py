"""Customer ids by external reference, many at once: POST /customers/resolve.

An import of interactions or statuses names its customers by the reference of the system it comes from
(`crm import --map customer_ref=...`). Reading every customer page by page to learn their ids costs a
count and a full customer rendering per page, so 100,000 customers took minutes and grew with the
square of the store; this answers only the references asked for, in one indexed query per chunk.
Erased customers are left out (as from the listing): their reference no longer names anyone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from servicekit.deps import SessionDep
from servicekit.sql import chunks
from services.customer.customers.models import MAX_BULK_ROWS, Customer

router = APIRouter(prefix="/customers", tags=["customers"])


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # As a customer's external_ref: a longer one can name no one, and says the file's column is not a reference.
    external_refs: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_BULK_ROWS, description="external references, any order, repeats allowed"
    )


class ResolvedRef(BaseModel):
    external_ref: str
    id: str


class ResolveResult(BaseModel):
    customers: list[ResolvedRef] = Field(description="each reference a customer carries, with its id")
    unknown: list[str] = Field(description="references no customer carries (or only an erased one)")


async def resolve(*, session: AsyncSession, external_refs: list[str]) -> ResolveResult:
    wanted = sorted(set(external_refs))
    found: dict[str, str] = {}
    for chunk in chunks(wanted):
        rows = await session.execute(
            select(col(Customer.external_ref), col(Customer.id)).where(
                col(Customer.external_ref).in_(chunk), col(Customer.erased_at).is_(None)
            )
        )
        found.update({ref: customer_id for ref, customer_id in rows if ref is not None})
    return ResolveResult(
        customers=[ResolvedRef(external_ref=ref, id=found[ref]) for ref in wanted if ref in found],
        unknown=[ref for ref in wanted if ref not in found],
    )


@router.post("/resolve", response_model=ResolveResult)
async def resolve_refs(body: ResolveRequest, session: SessionDep) -> ResolveResult:
    """The ids of the customers with these external references (up to 5000 per call), for imports that
    name customers by another system's reference. References no live customer carries are listed as unknown."""
    return await resolve(session=session, external_refs=body.external_refs)
