"""aiosqlite's interface over sqlite3, run in the event loop's own thread.

aiosqlite runs every call of a connection in a thread of its own: each cursor, execute, fetch, close, COMMIT
is a job put on a queue, a wake-up of that thread and a wake-up of the event loop for the answer, three to
four such hops per statement through SQLAlchemy's adapter. A statement on a small local file takes tens of
microseconds; the hops cost several times that in CPU. Here the same calls run at once in the calling
thread, so SQLAlchemy's aiosqlite dialect (``async_creator``) works unchanged and a statement is one call.

The price is that the event loop waits while a statement runs: on the embedded default's small files
that is tens of microseconds, less than the hops cost. It must never wait for another process's lock, so
SQLite's busy handler gets only INLINE_BUSY_TIMEOUT_MS (its rare waits inside a WAL transaction); the one
statement that waits for the write lock, BEGIN IMMEDIATE, is retried by servicekit.sqlite with the loop
free in between (another process on the same file: a CLI command; in WAL a reader never blocks a writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

# Milliseconds SQLite's busy handler may wait with the event loop blocked (BEGIN IMMEDIATE waits apart).
INLINE_BUSY_TIMEOUT_MS = 20


class InlineCursor:
    """aiosqlite.Cursor's coroutines over a sqlite3 cursor, answered without leaving the thread."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Cursors:
    """What aiosqlite's ``connection.cursor()`` returns: awaitable, and an async context manager."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __await__(self) -> Any:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> InlineCursor:
        return InlineCursor(self._connection.cursor())

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _RunNow:
    """Stands in for aiosqlite's job queue (SQLAlchemy's isolation_level setter puts a job on it)."""

    __slots__ = ()

    def put_nowait(self, job: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = job
        try:
            future.set_result(function())
        except Exception as error:  # handed to the awaiting caller, as aiosqlite's thread does
            future.set_exception(error)


class InlineConnection:
    """aiosqlite.Connection's interface over a sqlite3 connection, in the calling thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._tx = _RunNow()

    @property
    def _connection(self) -> sqlite3.Connection | None:  # SQLAlchemy checks it before COMMIT and ROLLBACK
        return self._conn

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    def cursor(self) -> _Cursors:
        return _Cursors(self._live())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return InlineCursor(self._live().execute(sql, parameters))

    async def commit(self) -> None:
        self._live().commit()

    async def rollback(self) -> None:
        self._live().rollback()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any], **kw: Any) -> None:
        self._live().create_function(name, num_params, func, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._live().isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._live().in_transaction

    @property
    def total_changes(self) -> int:
        return self._live().total_changes


def inline_creator(database: str, *, uri: bool = False) -> Callable[[], Any]:
    """SQLAlchemy's ``async_creator`` for a file: connections that run each call in the caller's thread."""

    async def connect() -> InlineConnection:
        # check_same_thread off: SQLAlchemy may close a connection from the garbage collector's thread.
        connection = sqlite3.connect(
            database, uri=uri, timeout=INLINE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        return InlineConnection(connection)

    return connect
