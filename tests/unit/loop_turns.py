"""How often another task on the event loop ran while a request was served: a consumer sharing the loop with
a bulk route (make run's layout) gets its answered queries handled only at such turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def other_task_turns() -> AsyncIterator[list[int]]:
    """A task that only waits for its turn, started before the body runs; [the times it ran meanwhile]."""
    turns = [0]
    running = True

    async def other() -> None:
        while running:
            await asyncio.sleep(0)
            turns[0] += 1

    task = asyncio.create_task(other())
    await asyncio.sleep(0)  # it has started
    turns[0] = 0
    try:
        yield turns
    finally:
        ran, running = turns[0], False
        await task  # its last wake-up, to see it should stop, is not a turn it was given meanwhile
        turns[0] = ran
