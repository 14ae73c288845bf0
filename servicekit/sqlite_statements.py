"""An INSERT and the rows it brings with it, in one transaction on an inline SQLite connection itself.

servicekit.driver's counterpart for the embedded default. On a SQLite file whose connections run in the
event loop's thread (servicekit.sqlite_driver) the ORM session's path for one small transaction (the
session and its transaction bookkeeping, an execution context and result per statement, a greenlet hop
per call into the connection) costs several times SQLite's own work. Here the same statements, compiled
once for the engine's dialect (servicekit.driver.Compiled: the same SQL text and bound values SQLAlchemy
sends), run on the pooled sqlite3 connection: BEGIN IMMEDIATE, the INSERT .. RETURNING and, when it wrote
a row, the follow-up rows in one executemany, then COMMIT. SQLite has no data-modifying CTE, so the rows
of a second table cannot ride on the first statement as they do on PostgreSQL.

What SQLAlchemy's path does around them is kept:
- the file's transaction queue (servicekit.sqlite): the lock taken before BEGIN IMMEDIATE and handed on as
  COMMIT or ROLLBACK goes out; BEGIN IMMEDIATE retried with the event loop free while another process
  holds the write lock; the checkpointer told of each commit;
- the connection is the pool's own, checked out without a greenlet when the pool has one idle
  (servicekit.driver.ready_without_waiting);
- statement events: before_cursor_execute and after_cursor_execute fired for each statement SQLAlchemy's
  path fires them for (BEGIN IMMEDIATE, the INSERT, the executemany), when the engine has listeners (they
  get the sqlite3 cursor itself, and an empty namespace as the execution context);
- errors: translated and wrapped by SQLAlchemy's own handling (a locked file is an OperationalError,
  transient; a constraint an IntegrityError), the transaction rolled back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from servicekit.driver import Compiled, _Context, _handle, ready_without_waiting
from servicekit.sqlite import LOCK_TIMEOUT_S, InlineFile, inline_file

BEGIN = "BEGIN IMMEDIATE"


class InlineInsert:
    """`statement` (an INSERT .. RETURNING that may write nothing) and, when it returned a row, rows of
    `follow` (an INSERT without values, setting `follow_columns`), committed together on an inline SQLite
    file's connection (see the module)."""

    def __init__(
        self, engine: AsyncEngine, statement: ClauseElement, follow: ClauseElement, follow_columns: Sequence[str]
    ) -> None:
        self.engine, self.file = inline_engine(engine)
        self.first = Compiled(self.engine, statement)
        self.then = Compiled(self.engine, follow, list(follow_columns))

    async def run(
        self, params: Mapping[str, Any], rows: Callable[[], Sequence[Mapping[str, Any]]]
    ) -> tuple[Any, ...] | None:
        """The statement's returned row (its follow-up rows, `rows()` called once it wrote, committed with
        it), or None when it wrote nothing (the transaction rolled back)."""
        async with inline_transaction(self.engine, self.file) as run:
            returned = await run.execute(self.first.sql, self.first.arguments(params))
            if not returned:
                await run.end(commit=False)
                return None
            await run.execute(self.then.sql, [self.then.arguments(row) for row in rows()], many=True)
        return tuple(returned[0])


class InlineSelect(Compiled):
    """A SELECT compiled once, for a transaction on an inline file's connection (inline_transaction): its
    rows as SQLAlchemy's result gives them, each value through its column type's own result processor
    (SQLite's DATETIME text parsed, JSON decoded), as named tuples (attribute access, as a Row)."""

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        super().__init__(engine, statement)
        columns: Any = statement.compile(dialect=engine.dialect)._result_columns
        self.row: Any = namedtuple("InlineRow", [column[0] for column in columns])  # type: ignore[misc]
        self.processors = [column[3]._cached_result_processor(engine.dialect, None) for column in columns]

    def rows(self, found: Sequence[Sequence[Any]]) -> list[Any]:
        make, processors = self.row._make, self.processors
        return [
            make(value if process is None else process(value) for process, value in zip(processors, raw, strict=True))
            for raw in found
        ]


def inline_engine(engine: AsyncEngine) -> tuple[Engine, InlineFile]:
    """The sync engine and its file, for an engine whose SQLite file runs inline (TypeError otherwise)."""
    sync: Engine = engine.sync_engine
    file = inline_file(sync)
    if file is None or sync.echo:
        raise TypeError("inline statements run on a SQLite file's inline connections, with SQLAlchemy's echo off")
    return sync, file


@asynccontextmanager
async def inline_transaction(engine: Engine, file: InlineFile) -> AsyncIterator[_Run]:
    """One transaction on a pooled inline connection: the file's queue taken, BEGIN IMMEDIATE; COMMIT
    (the checkpointer told) when the block ends without error and has not ended it itself (_Run.end);
    rolled back on any error; the queue handed on and the connection returned to the pool either way."""
    pool = engine.pool
    pooled: Any = pool.connect() if ready_without_waiting(pool) else await greenlet_spawn(pool.connect)
    run: _Run | None = None
    try:
        run = _Run(engine, pooled)
        await file.queue.acquire_in_loop(pooled.dbapi_connection)
        await run.begin()
        yield run
        if not run.ended:
            await run.end(commit=True)
            file.checkpointer.committed()
    except BaseException as error:
        if run is not None:
            await run.abandon(error)
        raise
    finally:
        file.queue.release(pooled.dbapi_connection)
        # Committed or rolled back above (or invalidated): the pool need not roll back again, which
        # it could not do here, outside a greenlet.
        pooled._checkin(transaction_was_reset=True)


class _Run:
    """One transaction's statements on a pooled inline connection."""

    def __init__(self, engine: Engine, pooled: Any) -> None:
        self.engine, self.pooled = engine, pooled
        self.raw: sqlite3.Connection = pooled.driver_connection._live()
        self.cursor = self.raw.cursor()
        self.listened = bool(engine.dispatch.before_cursor_execute or engine.dispatch.after_cursor_execute)
        self.connection = Connection(engine, pooled, _allow_autobegin=False) if self.listened else None
        self.ended = False

    async def begin(self) -> None:
        """BEGIN IMMEDIATE; while another process holds the write lock, retried with the event loop free
        (as servicekit.sqlite's begin does), up to LOCK_TIMEOUT_S."""
        deadline, pause = time.monotonic() + LOCK_TIMEOUT_S, 0.001
        while True:
            try:
                await self.execute(BEGIN, ())
                return
            except exc.OperationalError as error:  # each try's error handled as SQLAlchemy handles it
                if "locked" not in str(error.orig) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def execute(self, sql: str, arguments: Any, *, many: bool = False) -> list[Any]:
        """Run one statement (with its listeners' events); its rows."""
        connection, context = self.connection, None
        if connection is not None:
            context = _Context(executemany=many)
            for listener in connection.dispatch.before_cursor_execute:
                sql, arguments = listener(connection, self.cursor, sql, arguments, context, many)
        try:
            if many:
                self.cursor.executemany(sql, arguments)
                found: list[Any] = []
            else:
                found = self.cursor.execute(sql, arguments).fetchall()  # drained: COMMIT finds it finished
        except Exception as error:
            await self._raise(error, sql, arguments, context)
        if connection is not None:
            for listener in connection.dispatch.after_cursor_execute:
                listener(connection, self.cursor, sql, arguments, context, many)
        return found

    async def end(self, *, commit: bool) -> None:
        """COMMIT or ROLLBACK (the file's queue is handed on by the caller as it returns the connection);
        an error translated as SQLAlchemy translates one at COMMIT."""
        self.ended = True
        try:
            if commit:
                self.raw.commit()
            else:
                self.raw.rollback()
        except Exception as error:
            await self._raise(error, "COMMIT" if commit else "ROLLBACK", ())

    async def _raise(self, error: BaseException, sql: str, arguments: Any, context: _Context | None = None) -> None:
        """Raise `error` as SQLAlchemy's path would (servicekit.driver._handle: translated, wrapped, the
        transaction rolled back, a disconnect invalidating the pool)."""
        connection = self.connection or Connection(self.engine, self.pooled, _allow_autobegin=False)
        await greenlet_spawn(_handle, connection, self.pooled, context or _Context(), error, sql, list(arguments))

    async def abandon(self, error: BaseException) -> None:
        """After anything that went wrong: the transaction rolled back; a connection that cannot roll
        back is dropped from the pool."""
        if self.pooled.dbapi_connection is None or not self.raw.in_transaction:
            return
        try:
            self.raw.rollback()
        except Exception:
            await greenlet_spawn(self.pooled.invalidate, error)
