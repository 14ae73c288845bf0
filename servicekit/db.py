"""One async database per service: engine, session factory, commit hooks.

PostgreSQL (asyncpg) in tests, CI and production; SQLite (aiosqlite) as the embedded default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

OUTBOX_DIRTY = "outbox_dirty"
# SQLite before 3.32 allows 999 bound parameters; statements over many ids or rows go in chunks of this size.
IN_CHUNK = 500

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` values (for IN (...) lists and multi-row statements)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Database:
    def __init__(self, url: str, *, source: str = "", pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_postgres:
            # No pre-ping: it costs a round trip on every checkout (every request, batch and relay step).
            # A connection that died with a server restart fails its first statement instead; SQLAlchemy
            # then invalidates the whole pool and the error counts as transient (503 / retried), so one
            # failure per process replaces a ping per transaction. Recycling bounds a connection's age.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._commit_listeners: list[Callable[[], None]] = []

        class _Session(Session):
            pass

        event.listen(_Session, "after_commit", self._after_commit)
        event.listen(_Session, "after_rollback", _forget_outbox_writes)
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=_Session,
            info={"source": source, "postgres": self.is_postgres},
        )

    def on_outbox_commit(self, listener: Callable[[], None]) -> None:
        """Call listener after every commit that wrote outbox rows (wakes the relay)."""
        self._commit_listeners.append(listener)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(OUTBOX_DIRTY, False):
            for listener in self._commit_listeners:
                listener()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits by itself, for single statements that need no
        transaction (the relay's read and its mark): on PostgreSQL no BEGIN and COMMIT round trips.
        On SQLite, whose BEGIN IMMEDIATE hook needs a real transaction, one transaction around the block."""
        if self.is_postgres:
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: commits on success, rolls back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def dialect_insert(session: AsyncSession | Session) -> Callable[..., postgresql.Insert | sqlite.Insert]:
    """The INSERT construct of the session's database: both offer ON CONFLICT DO NOTHING / DO UPDATE."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _forget_outbox_writes(session: Session) -> None:
    session.info.pop(OUTBOX_DIRTY, None)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers, and BEGIN IMMEDIATE so writers queue instead of failing.

    A deferred SQLite transaction that reads first and writes later fails at once with SQLITE_BUSY when
    another connection wrote in between; taking the write lock up front makes busy_timeout apply.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
