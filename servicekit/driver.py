"""One compiled statement run on the asyncpg connection itself, for the hottest single statements.

SQLAlchemy's execution of one statement (an ORM session and its transaction bookkeeping, the execution
context, parameter building, the result proxy, two greenlet hops) costs the single post several times
the driver's own work. A `DriverStatement` is a Core statement compiled once for the engine's dialect:
the same SQL text and the same bound values (the dialect's bind processors, in its positional order) that
SQLAlchemy sends, run on a connection checked out from the engine's own pool (its size, timeout and
recycling hold) in autocommit, as SQLAlchemy's AUTOCOMMIT connections run it. PostgreSQL (asyncpg) only.

The check-out is the pool's own (``pool.connect()``: its accounting, its records, their recycling and
invalidation). It runs inside a greenlet, as SQLAlchemy runs it, whenever it might await (a new or recycled
connection, a wait for a free one, a pre-ping or checkout listener); when the pool has an idle connection
that is handed over as it is (see ready_without_waiting), it runs directly, without the greenlet's cost.

What the engine's listeners see is kept: when it has any, before_cursor_execute and after_cursor_execute
are fired by hand on a Connection wrapping the pooled connection (statement counters, tracing's SQL spans),
with an empty namespace as the execution context. A driver error goes through SQLAlchemy's own handling:
translated as its asyncpg adapter translates it, then wrapped, with disconnects invalidating the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from servicekit.sqlite import inline_file


def usable(engine: AsyncEngine) -> bool:
    """Whether statements of this engine may run on the driver, with SQLAlchemy not logging its statements
    (echo: the driver would not log them): asyncpg (DriverStatement), or a SQLite file whose connections
    run in the event loop's thread (servicekit.sqlite_statements)."""
    sync = engine.sync_engine
    return not sync.echo and (sync.dialect.driver == "asyncpg" or inline_file(sync) is not None)


class Compiled:
    """A statement compiled once for `engine`'s dialect: its SQL text and the positional values SQLAlchemy
    would send for given parameters (the dialect's bind processors, in its positional order).
    column_keys: for an INSERT without values, the columns it sets (as an executemany's rows give them)."""

    def __init__(self, engine: Engine, statement: ClauseElement, column_keys: list[str] | None = None) -> None:
        compiled: Any = statement.compile(dialect=engine.dialect, column_keys=column_keys)
        if compiled.literal_execute_params or compiled.post_compile_params or compiled.schema_translate_map:
            raise TypeError("a statement with expanding or literal parameters needs SQLAlchemy's execution")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError("a statement whose columns take Python-side defaults needs SQLAlchemy's execution")
        self.sql: str = compiled.string
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        self.binds: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, processors.get(name)) for name in compiled.positiontup
        ]
        # Values the statement carries itself (literals such as pg_notify's channel), as construct_params
        # fills them in; a bound name without one must be given.
        self.fixed = {
            name: bind.effective_value
            for name in compiled.positiontup
            if not (bind := compiled.binds[name]).required and not bind.callable
        }

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional values SQLAlchemy would send for `params` (every bound name without a value of
        the statement's own must be given)."""
        given = {**self.fixed, **params}
        return [given[name] if process is None else process(given[name]) for name, process in self.binds]


class DriverStatement(Compiled):
    """A statement compiled once for `engine`, run on its pool's asyncpg connections (see the module)."""

    def __init__(self, engine: AsyncEngine, statement: ClauseElement) -> None:
        self.engine: Engine = engine.sync_engine
        if self.engine.dialect.driver != "asyncpg" or self.engine.echo:
            raise TypeError("DriverStatement runs on asyncpg, with SQLAlchemy's echo off")
        super().__init__(self.engine, statement)

    async def first(self, params: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> tuple[Any, ...] | None:
        """Run it in autocommit on a connection of the engine's pool; its first row, or None.
        `params` may be a function, called once a connection is at hand (values that carry a time)."""
        pool = self.engine.pool
        pooled: Any = pool.connect() if ready_without_waiting(pool) else await greenlet_spawn(pool.connect)
        try:
            arguments = self.arguments(params() if callable(params) else params)
            sql, connection, context = self.sql, None, None
            if self.engine.dispatch.before_cursor_execute or self.engine.dispatch.after_cursor_execute:
                connection, context = Connection(self.engine, pooled, _allow_autobegin=False), _Context()
                sql, arguments = _before(connection, pooled, context, sql, arguments)
            try:
                row = await pooled.driver_connection.fetchrow(sql, *arguments)
            except BaseException as error:
                connection = connection or Connection(self.engine, pooled, _allow_autobegin=False)
                await greenlet_spawn(_handle, connection, pooled, context or _Context(), error, sql, arguments)
                raise  # not reached: _handle raises
            if connection is not None:
                for listener in connection.dispatch.after_cursor_execute:
                    listener(connection, pooled.dbapi_connection.cursor(), sql, arguments, context, False)
            return None if row is None else tuple(row)
        finally:
            pooled.close()  # back to the pool (no transaction was begun: no rollback to send)


# A connection this close to its recycling age goes through the greenlet: its age is read here and again in
# the check-out, microseconds later, and it must not cross the limit in between.
RECYCLE_MARGIN_S = 1.0


def ready_without_waiting(pool: Pool, now: float | None = None) -> bool:
    """Whether `pool.connect()` hands over an idle connection without awaiting anything, so it may run
    outside a greenlet: an asyncio queue pool without pre-ping or checkout listeners, whose next idle
    connection (the one its queue gives next) is open and due neither for recycling nor for replacement
    after an invalidation (as _ConnectionRecord.get_connection decides). False whenever unsure."""
    if type(pool) is not AsyncAdaptedQueuePool or pool._pre_ping or pool.dispatch.checkout:
        return False
    queue: Any = pool._pool
    idle = getattr(getattr(queue, "_queue", None), "_queue", None)  # the asyncio queue's deque
    if not idle:
        return False
    record = idle[-1] if queue.use_lifo else idle[0]  # LifoQueue pops the right end, Queue the left
    started = getattr(record, "starttime", None)
    if record.dbapi_connection is None or started is None:
        return False
    age = (time.time() if now is None else now) - started
    recycle: float = pool._recycle
    stale = pool._invalidate_time > started or getattr(record, "_soft_invalidate_time", 0) > started
    return not stale and (recycle < 0 or age <= recycle - RECYCLE_MARGIN_S)


class _Context(SimpleNamespace):
    """The execution context listeners get: what they set on it lives until after_cursor_execute or
    handle_error (tracing keeps its span there)."""

    executemany = False

    def handle_dbapi_exception(self, error: BaseException) -> None:
        """Nothing to clean up (SQLAlchemy's context closes its cursor here)."""


def _before(
    connection: Connection, pooled: Any, context: _Context, sql: str, arguments: list[Any]
) -> tuple[str, list[Any]]:
    cursor = pooled.dbapi_connection.cursor()
    for listener in connection.dispatch.before_cursor_execute:
        # Listeners registered with retval=True may rewrite the statement (e.g. tracing's SQL comments).
        sql, arguments = listener(connection, cursor, sql, arguments, context, False)
    return sql, list(arguments)


def _handle(
    connection: Connection,
    pooled: Any,
    context: _Context,
    error: BaseException,
    sql: str,
    arguments: list[Any],
) -> None:
    """Raise `error` as SQLAlchemy would have: translated by its asyncpg adapter, wrapped (the class, and
    connection_invalidated on a disconnect, say whether it is transient), the pool invalidated on a
    disconnect, the handle_error listeners called."""
    translated: BaseException = error
    if isinstance(error, Exception):
        try:
            pooled.dbapi_connection._handle_exception(error)
        except Exception as adapted:
            translated = adapted
    cursor = pooled.dbapi_connection.cursor() if pooled.dbapi_connection is not None else None
    try:
        raise translated  # SQLAlchemy's handling reads the exception being handled (sys.exc_info)
    except BaseException:
        connection._handle_dbapi_exception(translated, sql, arguments, cursor, context)  # type: ignore[arg-type]
