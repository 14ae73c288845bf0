"""One async database per service: engine, session factory, commit hooks.

PostgreSQL (asyncpg) in tests, CI and production; SQLite (aiosqlite) as the embedded default.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    Table,
    event,
    insert,
    inspect,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from servicekit.sql import assign, json_text, update_rows
from servicekit.sqlite import configure_sqlite, engine_options

# Writes rows through a synchronous session, in its transaction (hold_until_commit calls it in before_commit).
RowWriter = Callable[[Session, list[dict[str, Any]]], None]


@dataclass(slots=True)
class HeldForCommit:
    """What a session's transactions leave for their commit: the rows hold_until_commit holds, and whether
    outbox rows were written (the relay in this process wakes after the commit)."""

    rows: dict[str, tuple[RowWriter, list[dict[str, Any]]]] = field(default_factory=dict)  # in the order first held
    last: set[str] = field(default_factory=set)  # keys written after every other (they read what the others wrote)
    hooked: bool = False  # the session's before_commit writes the rows, its after_rollback drops them
    outbox_written: bool = False  # since the last commit or rollback


class CommitSession(Session):
    """The synchronous session of every Database's sessions, with its commit's held state as a typed field."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = HeldForCommit()


def held_for_commit(session: AsyncSession | Session) -> HeldForCommit:
    """The session's held state; the session must come from a Database (its sessions are CommitSessions)."""
    sync = _sync(session)
    if not isinstance(sync, CommitSession):
        raise TypeError("rows held for commit need a session made by servicekit.db.Database")
    return sync.held


def mark_outbox_written(session: AsyncSession | Session) -> None:
    """The transaction wrote outbox rows: after it commits, the relay in this process wakes."""
    held_for_commit(session).outbox_written = True


class Database:
    def __init__(
        self, url: str, *, source: str = "", pool_size: int = 20, echo: bool = False, application_name: str = ""
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.source = source
        self.application_name = application_name[:63]  # PostgreSQL keeps 63 bytes of it
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        # JSON columns (scores' factors, alerts' evidence, outbox headers) go through orjson, several times
        # faster than the standard library's json both ways and the same JSON.
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": json_text, "json_deserializer": orjson.loads}
        # Statement errors (logged, and in tracebacks) must not carry the bound values: they are PII.
        kwargs["hide_parameters"] = True
        if self.is_postgres:
            # No pre-ping: it costs a round trip on every checkout (every request, batch and relay step).
            # A connection that died with a server restart fails its first statement instead; SQLAlchemy
            # then invalidates the whole pool and the error counts as transient (503 / retried), so one
            # failure per process replaces a ping per transaction. Recycling bounds a connection's age.
            # No overflow: an overflow connection is closed when it is returned, so bursts opened and closed
            # connections (a server process forked, statements prepared again) at the busiest moments. A
            # request that finds every connection busy waits for one instead (pool_timeout, 30 s).
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_recycle=1800)
            if application_name:
                # Shown in pg_stat_activity: which process holds each server backend (and its memory).
                kwargs["connect_args"] = {"server_settings": {"application_name": self.application_name}}
        sqlite_options = engine_options(url) if self.is_sqlite else {}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs, **sqlite_options)
        if self.is_sqlite:
            configure_sqlite(self.engine, inline=bool(sqlite_options))
        self._commit_listeners: list[Callable[[], None]] = []

        class _Session(CommitSession):
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
        held = held_for_commit(session)
        if held.outbox_written:
            held.outbox_written = False
            self.outbox_committed()

    def outbox_committed(self) -> None:
        """Outbox rows were committed without a session (servicekit.driver): wake the relay as a commit does."""
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

    async def open_pool(self) -> int:
        """Open every connection of the pool now (PostgreSQL; SQLite has no pool to fill); how many were opened.

        The pool keeps what it opened (no overflow, see __init__), so after this the process holds exactly
        `pool_size` server backends for its life (a recycled connection is replaced one for one)."""
        if not self.is_postgres:
            return 0
        async with contextlib.AsyncExitStack() as held:
            # Each checkout is held until all are, so every one is a new connection, not the same one again.
            for _ in range(self.pool_size):
                await held.enter_async_context(self.engine.connect())
        return self.pool_size

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def update_at_commit(session: AsyncSession | Session, row: Any, **values: Any) -> None:
    """Set attributes of an ORM row now and write them just before commit, with the transaction's other
    rows of its table updated this way: one statement per table, whatever columns each row changed
    (update_rows).

    For consumers that update thousands of rows a batch. As tracked ORM changes, a flush groups only
    consecutive rows with the same changed columns into one executemany, which runs the UPDATE once per
    row; mixed changes came out as about one statement per row, plus the ORM's bookkeeping. The values
    go on the object as if stored, so later reads in the transaction see them, and are written as they
    stand at commit. A row new in this transaction takes them through its INSERT. Only for columns
    nothing else in the transaction writes with SQL of its own (that write would be overwritten).
    """
    if not values:
        return
    state = inspect(row)
    if not state.persistent:
        assign(row, **values)
        return
    for key, value in values.items():
        set_committed_value(row, key, value)
    table = state.mapper.local_table
    hold_until_commit(session, f"{_UPDATED}{table.name}", [{"row": row, "columns": tuple(values)}], _write_updates)


_UPDATED = "updated_at_commit:"


def _write_updates(session: Session, held: list[dict[str, Any]]) -> None:
    columns_by_row: dict[Any, tuple[Any, dict[str, None]]] = {}  # identity -> (row, its changed columns)
    for entry in held:
        _, changed = columns_by_row.setdefault(inspect(entry["row"]).identity, (entry["row"], {}))
        changed.update(dict.fromkeys(entry["columns"]))
    mapper = inspect(next(iter(columns_by_row.values()))[0]).mapper
    [key] = [c.key for c in mapper.primary_key]  # single-column keys only
    # One statement for the table, the same for any rows (it covers every column): each row writes only
    # its changed columns, so its unchanged (e.g. large JSON) columns do not travel again.
    columns = [c.key for c in mapper.local_table.columns]
    values = [
        {key: getattr(row, key), **{c: getattr(row, c) for c in columns if c in changed}}
        for row, changed in columns_by_row.values()
    ]
    update_rows(session, mapper.local_table, key, values, columns=columns)


@cache
def insert_rows(table: Table) -> RowWriter:
    """A hold_until_commit writer that inserts the held rows into `table` (one executemany)."""

    def write(session: Session, rows: list[dict[str, Any]]) -> None:
        if rows:
            session.execute(insert(table), rows)

    return write


def hold_until_commit(
    session: AsyncSession | Session, key: str, rows: Sequence[dict[str, Any]], writer: RowWriter, *, last: bool = False
) -> None:
    """Hold rows under `key` and write them with writer(session, rows) just before the transaction commits.

    For append-only rows that nothing reads back in the same transaction (outbox, change logs): a consumer
    batch that adds some per event writes them in one statement instead of one per event, and builds no
    ORM objects for them. Rows keep the order they were held in; keys are written in the order first held,
    those held with ``last`` after all others (a writer that reads what the others write).
    A rollback of the whole transaction drops them; a rolled-back savepoint does not (hold nothing inside
    savepoints that may roll back).
    """
    held = held_for_commit(session)
    if not held.hooked:
        held.hooked = True
        sync = _sync(session)
        event.listen(sync, "before_commit", _write_held)
        event.listen(sync, "after_rollback", _drop_held)
    held.rows.setdefault(key, (writer, []))[1].extend(rows)
    if last:
        held.last.add(key)


def holds(session: AsyncSession | Session, key: str) -> bool:
    """Whether rows under `key` are held until commit in this session (hold_until_commit was called for it)."""
    return key in held_for_commit(session).rows


def take_held(session: Session, key: str) -> list[dict[str, Any]]:
    """The rows held under `key` so far, which the caller now writes itself (they are no longer held)."""
    held = held_for_commit(session).rows.get(key)
    if not held:
        return []
    rows = list(held[1])
    held[1].clear()
    return rows


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


def _write_held(session: Session) -> None:
    held = held_for_commit(session)
    ordered = sorted(held.rows.items(), key=lambda item: item[0] in held.last)  # stable: first held first
    for _, (writer, rows) in ordered:
        if rows:
            batch = list(rows)
            rows.clear()
            writer(session, batch)


def _drop_held(session: Session) -> None:
    for _, rows in held_for_commit(session).rows.values():
        rows.clear()


def _forget_outbox_writes(session: Session) -> None:
    held_for_commit(session).outbox_written = False
