"""Long CPU-bound loops in a request give the event loop a turn every few rows.

A service process runs its API, relay and consumer on one event loop (`make run`'s layout). A bulk request
validates, builds and serializes thousands of rows; without a pause the consumer's database round trips
and the relay's publishes wait behind the whole request (a replica fell to 32-120 customers/s during an
interactions import; docs/performance/2026-12-07-import-8.md). So such loops go through `in_turns`: a slice
of rows at a time, `asyncio.sleep(0)` between two slices, which runs every ready callback and polls the
sockets once before the loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# Rows between two turns: 100 rows are about 5-15 ms of a bulk route's CPU on this box, and a turn costs a few
# microseconds, so the request pays well under 1 % for it.
ROWS_PER_TURN = 100


async def give_turn() -> None:
    """Let the loop's other ready tasks (a consumer's answered query, a relay's publish) run once."""
    await asyncio.sleep(0)


async def in_turns(values: Sequence[T], size: int = ROWS_PER_TURN) -> AsyncIterator[tuple[int, Sequence[T]]]:
    """Consecutive slices of at most `size` values with the index of their first, and a turn for the
    loop's other tasks before every slice but the first (a request of one slice pays nothing)."""
    for start in range(0, len(values), size):
        if start:
            await give_turn()
        yield start, values[start : start + size]
