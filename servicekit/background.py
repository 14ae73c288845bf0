"""Periodic loops for a service's consume role (ServiceSpec.background): SLA watchers, sweeps.

A pass that fails is logged and tried again on the next tick, so a database outage pauses a loop
without killing it; cancellation (the process stopping) ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database

log = logging.getLogger("servicekit.background")


async def every(
    interval_s: float, name: str, work: Callable[[], Awaitable[object]], *, wait_first: bool = False
) -> None:
    """Run `work` forever, `interval_s` after each pass ends. wait_first: the first pass one interval
    after start, for work that need not run at every restart (a restart loop then costs nothing)."""
    if wait_first:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("background pass failed", extra={"loop": name, "error": repr(exc)})
        await asyncio.sleep(interval_s)


async def every_in_transaction(
    interval_s: float, name: str, database: Database, work: Callable[[AsyncSession], Awaitable[object]]
) -> None:
    """Run `work` forever, each pass in one transaction (committed if it returns, rolled back if it raises)."""

    async def one_pass() -> object:
        async with database.transaction() as session:
            return await work(session)

    await every(interval_s, name, one_pass)
