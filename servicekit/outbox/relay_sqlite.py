"""The outbox relay's read and mark on an inline SQLite file's connection itself.

The relay's rounds on the embedded default (servicekit.sqlite_driver: the file's connections run in the
event loop's thread) cost more in SQLAlchemy's execution (a Connection and its transaction, an execution
context and a result per statement, a greenlet hop per call) than in SQLite. Here the same statements, in
the same transaction, run on the pooled sqlite3 connection (servicekit.sqlite_statements): BEGIN IMMEDIATE
through the file's transaction queue, the mark of the acknowledged rows (when there are any), the read of
the next batch, COMMIT. The SQL text and bound values are SQLAlchemy's own: the read compiled once, the
mark's `IN (?, ?, ...)` compiled once per number of ids, as SQLAlchemy expands its list; the rows come back
through the columns' own result processors. Errors are translated as SQLAlchemy translates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import BindParameter

from servicekit.driver import Compiled
from servicekit.sqlite_statements import InlineSelect, inline_engine, inline_transaction
from servicekit.tables import OUTBOX


class InlineRelayStatements:
    """`read` (the batch of unpublished rows, bound by `limit`) and the mark of acknowledged ids (setting
    `acked_at`), on an inline SQLite file (TypeError for any other engine)."""

    def __init__(self, engine: AsyncEngine, read: ClauseElement, acked_at: BindParameter[Any]) -> None:
        self.engine, self.file = inline_engine(engine)
        self.read = InlineSelect(self.engine, read)
        self.acked_at = acked_at
        self._marks: dict[int, Compiled] = {}

    def mark_of(self, count: int) -> Compiled:
        """The mark of `count` ids, bound as ids_1 .. ids_<count> (the names SQLAlchemy expands `ids` to)."""
        mark = self._marks.get(count)
        if mark is None:
            ids = [bindparam(f"ids_{n}", type_=OUTBOX.c.id.type) for n in range(1, count + 1)]
            statement = update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(published_at=self.acked_at)
            mark = self._marks[count] = Compiled(self.engine, statement)
        return mark

    def _mark_arguments(self, acked: Mapping[str, Any]) -> tuple[str, list[Any]]:
        ids = acked["ids"]
        mark = self.mark_of(len(ids))
        named = {f"ids_{n}": value for n, value in enumerate(ids, 1)}
        return mark.sql, mark.arguments({**named, "acked_at": acked["acked_at"]})

    async def mark_and_read(self, acked: Mapping[str, Any], limit: int) -> list[Any]:
        """Mark `acked` ({"ids": [...], "acked_at": ...}; empty: no mark) and read up to `limit` rows,
        in one transaction."""
        async with inline_transaction(self.engine, self.file) as run:
            if acked:
                await run.execute(*self._mark_arguments(acked))
            found = await run.execute(self.read.sql, self.read.arguments({"limit": limit}))
        return self.read.rows(found)

    async def mark(self, acked: Mapping[str, Any]) -> None:
        """Mark `acked` by itself (a transaction of the one UPDATE)."""
        async with inline_transaction(self.engine, self.file) as run:
            await run.execute(*self._mark_arguments(acked))
