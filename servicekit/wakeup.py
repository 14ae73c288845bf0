"""Wake a loop that waits for rows other code commits (queued jobs), instead of polling the table often.

A writer calls `announce(session, channel)` in the transaction that adds the work. On PostgreSQL that is a
`pg_notify` in the transaction, delivered at commit to every process that LISTENs on the channel (this
one too); elsewhere the session wakes this process's waiters once it has committed. A `Wakeup` is the
waiting side: `wait(timeout)` returns early when an announcement arrives, and the timeout is only the
fallback poll (a notification lost while the LISTEN connection was down, or a writer in another process
on SQLite, which has no channel between processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database

log = logging.getLogger("servicekit.wakeup")

# This process's waiters per channel: a commit on SQLite (or without a LISTEN) wakes them directly.
_LOCAL: dict[str, set[asyncio.Event]] = {}


async def announce(session: AsyncSession, channel: str) -> None:
    """Say in this transaction that work on `channel` was added: waiters wake once it commits."""
    if session.info.get("postgres"):
        await session.execute(select(func.pg_notify(channel, "")))
        return

    def wake(_session: Any) -> None:
        for waiter in _LOCAL.get(channel, ()):
            waiter.set()

    event.listen(session.sync_session, "after_commit", wake, once=True)


class Wakeup:
    """The waiting side of a channel, for one loop. `start()` before the loop, `stop()` after it."""

    def __init__(self, database: Database, channel: str) -> None:
        self.database = database
        self.channel = channel
        self._event = asyncio.Event()
        self._listener: Any = None

    @property
    def listening(self) -> bool:
        """True while announcements from other processes reach this one (PostgreSQL LISTEN is up)."""
        return self._listener is not None and not self._listener.is_closed()

    async def start(self) -> None:
        _LOCAL.setdefault(self.channel, set()).add(self._event)
        await self._ensure_listener()

    async def stop(self) -> None:
        _LOCAL.get(self.channel, set()).discard(self._event)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)

    async def wait(self, timeout_s: float) -> bool:
        """Wait for an announcement or the timeout; True if woken. Announcements made while the caller was
        busy are kept, so work committed between two waits is never slept through."""
        await self._ensure_listener()
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    async def _ensure_listener(self) -> None:
        if not self.database.is_postgres or self.listening:
            return
        import asyncpg

        dsn = self.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            named = {"application_name": f"{self.database.application_name} listen"[:63]}
            self._listener = await asyncpg.connect(dsn, server_settings=named)
            await self._listener.add_listener(self.channel, lambda *_: self._event.set())
        except Exception as exc:  # the fallback poll still finds the work
            log.warning("LISTEN unavailable, polling", extra={"channel": self.channel, "error": repr(exc)})
            self._listener = None
        else:
            self._event.set()  # work announced while nobody listened: look once
