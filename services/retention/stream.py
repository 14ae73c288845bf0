"""Server-sent events of alert changes, fed from the alert_changes log.

Every alert change is written to alert_changes in the transaction that makes it; its seq is the SSE
event id. One broadcaster per process reads new rows (woken by this process's commits, and polling
for commits made by other processes) and fans them out to the connected clients. A client that
reconnects with Last-Event-ID first gets every logged change after that id, so it misses nothing
within the log's retention. Changes go out in seq order only (see emittable), so an id a client
resumes from never has a lower change still to commit behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from sqlalchemy import func, select

from servicekit.db import Database
from services.retention.alerts.models import AlertChange

REPLAY_MAX = 5000
QUEUE_MAX = 1000  # changes buffered per subscriber; a subscriber this far behind is dropped


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    event_type: str
    data: dict[str, Any]


def format_sse(change: Change) -> bytes:
    return f"id: {change.seq}\nevent: {change.event_type}\ndata: ".encode() + orjson.dumps(change.data) + b"\n\n"


async def changes_after(
    database: Database, after: int, *, through: int | None = None, limit: int = REPLAY_MAX
) -> list[Change]:
    query = select(AlertChange.seq, AlertChange.event_type, AlertChange.data).where(AlertChange.seq > after)
    if through is not None:
        query = query.where(AlertChange.seq <= through)
    async with database.sessions() as session:
        rows = (await session.execute(query.order_by(AlertChange.seq).limit(limit))).all()
    return [Change(int(r.seq), r.event_type, r.data) for r in rows]


async def last_seq(database: Database) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.max(AlertChange.seq)))).scalar_one_or_none() or 0)


def emittable(
    changes: Sequence[Change], through: int, gaps: dict[int, float], now: float, gap_wait_s: float
) -> tuple[list[Change], int]:
    """The changes after `through` that can go out in seq order, and the new `through`.

    A change goes out only once every lower seq has gone out or the gap before it has been waited for
    `gap_wait_s` (`gaps`: the gap's first missing seq -> when it was first seen; updated here). So the
    stream's ids only rise, and a client resuming after any id it got misses nothing that commits within
    the wait. Only the gap right after `through` is ever waited on, so `gaps` holds at most one entry.
    """
    out: list[Change] = []
    for change in changes:
        if change.seq <= through:
            continue
        if change.seq > through + 1 and now - gaps.setdefault(through + 1, now) < gap_wait_s:
            break
        gaps.pop(through + 1, None)
        out.append(change)
        through = change.seq
    return out, through


class Subscriber:
    """One connected client: a bounded queue, and whether it fell too far behind and was dropped."""

    __slots__ = ("dropped", "queue")

    def __init__(self, queue_max: int) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue(queue_max)
        self.dropped = False


class Broadcaster:
    def __init__(
        self,
        database: Database,
        poll_interval_s: float,
        *,
        gap_wait_s: float,
        queue_max: int = QUEUE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.poll_interval_s = poll_interval_s
        self.gap_wait_s = gap_wait_s
        self.queue_max = queue_max
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._through = 0  # every seq up to here has gone out (or was logged before the start)
        self._gaps: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        database.on_outbox_commit(self._wake.set)  # every alert change also writes the outbox

    async def start(self) -> None:
        if self._task is None:
            # What is already logged counts as sent: new clients get it only through Last-Event-ID replay.
            self._through = await last_seq(self.database)
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
        while True:
            read = await changes_after(self.database, self._through)
            out, self._through = emittable(read, self._through, self._gaps, self.clock(), self.gap_wait_s)
            for change in out:
                for subscriber in list(self.subscribers):
                    try:
                        subscriber.queue.put_nowait(change)
                    except asyncio.QueueFull:
                        # A slow reader must not grow memory without bound: its stream ends, and it
                        # resumes with Last-Event-ID from the log (what it never got is replayed).
                        subscriber.dropped = True
                        self.subscribers.discard(subscriber)
            if len(read) < REPLAY_MAX or len(out) < len(read):
                return  # all read, or held at a gap

    async def events(self, last_event_id: int | None, keepalive_s: float) -> AsyncIterator[bytes]:
        subscriber = Subscriber(self.queue_max)
        queue = subscriber.queue
        # Subscribed at the same point as `through` is read: the queue gets exactly what goes out after it.
        self.subscribers.add(subscriber)
        through = self._through
        try:
            if last_event_id is not None:
                after = last_event_id
                while after < through:
                    replay = await changes_after(self.database, after, through=through)
                    if not replay:
                        break
                    for change in replay:
                        yield format_sse(change)
                    after = replay[-1].seq
            yield b": connected\n\n"
            while True:
                if subscriber.dropped:
                    return  # the client reconnects with the last id it got
                try:
                    change = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if subscriber.dropped:
                    return
                yield format_sse(change)
        finally:
            self.subscribers.discard(subscriber)


async def broadcaster(
    app: FastAPI, poll_interval_s: float, gap_wait_s: float, queue_max: int = QUEUE_MAX
) -> Broadcaster:
    """The process's broadcaster, started on first use."""
    existing: Broadcaster | None = getattr(app.state, "alert_broadcaster", None)
    if existing is None:
        existing = Broadcaster(app.state.database, poll_interval_s, gap_wait_s=gap_wait_s, queue_max=queue_max)
        app.state.alert_broadcaster = existing
    await existing.start()
    return existing
