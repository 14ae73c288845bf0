"""Owners and profiles (segment, team, account-managed and scored tier) for replica rows from before the
replica kept them, read once from the customer service: the step after an upgrade, run by itself.

Every customer event and snapshot sets the owner since, and every customer event carrying the whole profile
sets that; rows older than the columns are filled here, a batch per transaction, asking the customer master
for the batch at once (its answer is at least as new as any event the replica holds; the scored tier is
taken only when newer than the one held). The loop ends when no row is left; an unavailable customer
service is asked again later.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from fastapi import FastAPI
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from servicekit.types import as_utc
from services.interaction.replica.directory import CustomerBatchLookup, CustomerSnapshot, customer_directory
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

log = logging.getLogger("interaction.replica")
BATCH = 1000


async def backfill_owners(*, session: AsyncSession, lookup_many: CustomerBatchLookup, batch: int = BATCH) -> int:
    """Fill the owner and profile of up to ``batch`` rows that have either unread; how many rows were looked at.
    ``lookup_many`` answers with profiles (the customer service's lookup with profile=True)."""
    unread = or_(col(KnownCustomer.owner_known).is_(False), col(KnownCustomer.profile_known).is_(False))
    rows = list(
        (
            await session.execute(
                select(KnownCustomer)
                .where(unread, col(KnownCustomer.erased).is_(False))
                .order_by(col(KnownCustomer.customer_id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not rows:
        return 0
    found = await lookup_many([row.customer_id for row in rows])
    for row in rows:
        # An event may have set either meanwhile (held by this transaction's lock since): that one is kept.
        # A customer the master does not know has nothing to read; it is not asked again.
        snapshot = found.get(row.customer_id)
        if not row.owner_known:
            row.owner = snapshot.owner if snapshot is not None else None
            row.owner_known = True
        if not row.profile_known:
            if snapshot is not None:
                row.segment, row.team, row.managed_tier = snapshot.segment, snapshot.team, snapshot.managed_tier
                _take_scored_tier(row, snapshot)
            row.profile_known = True
    await session.flush()
    return len(rows)


def _take_scored_tier(row: KnownCustomer, snapshot: CustomerSnapshot) -> None:
    if snapshot.scored_tier_at is None:
        return
    at = as_utc(snapshot.scored_tier_at)
    if row.scored_tier_at is None or as_utc(row.scored_tier_at) < at:
        row.scored_tier, row.scored_tier_at = snapshot.scored_tier, at


async def run_owner_backfill(app: FastAPI) -> None:
    """Backfill pass after pass until no row is left (consume role)."""
    settings: InteractionSettings = app.state.settings
    directory = customer_directory(app)
    while True:
        try:
            async with app.state.database.transaction() as session:
                done = await backfill_owners(session=session, lookup_many=partial(directory.fetch_many, profile=True))
            if done == 0:
                return
            log.info("replica owners backfilled", extra={"rows": done})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("owner backfill pass failed", extra={"error": repr(exc)})
            await asyncio.sleep(settings.parked_sweep_interval_s)
