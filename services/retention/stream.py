"""Server-sent events of alert changes, fed from the alert_changes log.

Every alert change is written to alert_changes in the transaction that makes it; its seq is the SSE
event id. One broadcaster per process reads new rows (woken by this process's commits, and polling
for commits made by other processes) and fans them out to the connected clients. A client that
reconnects with Last-Event-ID first gets every logged change after that id, so it misses nothing
within the log's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from sqlalchemy import func, select

from servicekit.db import Database
from services.retention.models import AlertChange

# Rows read again behind the highest seq seen: on PostgreSQL a lower seq can commit after a higher one.
LOOKBACK = 500
REPLAY_MAX = 5000


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    event_type: str
    data: dict[str, Any]


def format_sse(change: Change) -> bytes:
    return f"id: {change.seq}\nevent: {change.event_type}\ndata: ".encode() + orjson.dumps(change.data) + b"\n\n"


async def changes_after(database: Database, after: int, limit: int = REPLAY_MAX) -> list[Change]:
    async with database.sessions() as session:
        rows = (
            await session.execute(
                select(AlertChange.seq, AlertChange.event_type, AlertChange.data)
                .where(AlertChange.seq > after)
                .order_by(AlertChange.seq)
                .limit(limit)
            )
        ).all()
    return [Change(int(r.seq), r.event_type, r.data) for r in rows]


async def last_seq(database: Database) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.max(AlertChange.seq)))).scalar_one_or_none() or 0)


class Broadcaster:
    def __init__(self, database: Database, poll_interval_s: float) -> None:
        self.database = database
        self.poll_interval_s = poll_interval_s
        self.subscribers: set[asyncio.Queue[Change]] = set()
        self._wake = asyncio.Event()
        self._high = 0
        self._sent: deque[int] = deque(maxlen=4 * LOOKBACK)
        self._task: asyncio.Task[None] | None = None
        database.on_outbox_commit(self._wake.set)  # every alert change also writes the outbox

    async def start(self) -> None:
        if self._task is None:
            # What is already logged counts as sent: new clients get it only through Last-Event-ID replay.
            self._high = await last_seq(self.database)
            for change in await changes_after(self.database, max(self._high - LOOKBACK, 0)):
                self._sent.append(change.seq)
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
            with contextlib.suppress(Exception):
                await self.poll()

    async def poll(self) -> None:
        sent = set(self._sent)
        for change in await changes_after(self.database, max(self._high - LOOKBACK, 0)):
            if change.seq in sent:
                continue
            self._sent.append(change.seq)
            self._high = max(self._high, change.seq)
            for queue in list(self.subscribers):
                queue.put_nowait(change)

    async def events(self, last_event_id: int | None, keepalive_s: float) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self.subscribers.add(queue)  # subscribe before replaying: nothing falls between the two
        try:
            replayed: set[int] = set()
            if last_event_id is not None:
                for change in await changes_after(self.database, last_event_id):
                    replayed.add(change.seq)
                    yield format_sse(change)
            yield b": connected\n\n"
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if change.seq not in replayed:
                    yield format_sse(change)
        finally:
            self.subscribers.discard(queue)


async def broadcaster(app: FastAPI, poll_interval_s: float) -> Broadcaster:
    """The process's broadcaster, started on first use."""
    existing: Broadcaster | None = getattr(app.state, "alert_broadcaster", None)
    if existing is None:
        existing = Broadcaster(app.state.database, poll_interval_s)
        app.state.alert_broadcaster = existing
    await existing.start()
    return existing
