"""Owners for replica rows from before the replica kept them, read once from the customer service.

Every customer event and snapshot sets the owner since; rows older than the column are filled here, a batch
per transaction, asking the customer master for the batch at once (its answer is at least as new as any event
the replica holds). The loop ends when no row is left; an unavailable customer service is asked again later.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.interaction.replica.directory import CustomerBatchLookup, customer_directory
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

log = logging.getLogger("interaction.replica")
BATCH = 1000


async def backfill_owners(*, session: AsyncSession, lookup_many: CustomerBatchLookup, batch: int = BATCH) -> int:
    """Fill the owner of up to ``batch`` rows that have none read yet; how many rows were looked at."""
    rows = list(
        (
            await session.execute(
                select(KnownCustomer)
                .where(col(KnownCustomer.owner_known).is_(False), col(KnownCustomer.erased).is_(False))
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
        snapshot = found.get(row.customer_id)
        if row.owner_known:  # an event set it meanwhile (held by this transaction's lock since)
            continue
        # A customer the master does not know has no owner to read; it is not asked again.
        row.owner = snapshot.owner if snapshot is not None else None
        row.owner_known = True
    await session.flush()
    return len(rows)


async def run_owner_backfill(app: FastAPI) -> None:
    """Backfill pass after pass until no row is left (consume role)."""
    settings: InteractionSettings = app.state.settings
    directory = customer_directory(app)
    while True:
        try:
            async with app.state.database.transaction() as session:
                done = await backfill_owners(session=session, lookup_many=directory.fetch_many)
            if done == 0:
                return
            log.info("replica owners backfilled", extra={"rows": done})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("owner backfill pass failed", extra={"error": repr(exc)})
            await asyncio.sleep(settings.parked_sweep_interval_s)
