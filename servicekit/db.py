"""One async database per service: engine, session factory, commit hooks.

PostgreSQL (asyncpg) in tests, CI and production; SQLite (aiosqlite) as the embedded default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    ColumnElement,
    Select,
    String,
    Table,
    Text,
    bindparam,
    case,
    cast,
    event,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_attribute, set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class

# Writes rows through a synchronous session, in its transaction (hold_until_commit calls it in before_commit).
RowWriter = Callable[[Session, list[dict[str, Any]]], None]
# SQLite before 3.32 allows 999 bound parameters; statements over many ids or rows go in chunks of this size.
IN_CHUNK = 500

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` values (for IN (...) lists and multi-row statements)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_dumps(value: Any) -> str:
    # numpy scalars (model fits' figures) and other float subclasses serialise as the standard library does
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


@dataclass(slots=True)
class HeldForCommit:
    """What a session's transactions leave for their commit: the rows hold_until_commit holds, and whether
    outbox rows were written (the relay in this process wakes after the commit)."""

    rows: dict[str, tuple[RowWriter, list[dict[str, Any]]]] = field(default_factory=dict)  # in the order first held
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
    def __init__(self, url: str, *, source: str = "", pool_size: int = 20, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        # JSON columns (scores' factors, alerts' evidence, outbox headers) go through orjson, several times
        # faster than the standard library's json both ways and the same JSON.
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps, "json_deserializer": orjson.loads}
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
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
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


KEYS = "keys"  # the bound parameter of for_each_key's values


def for_each_key(query: Select[Any], key: ColumnElement[Any], *, postgres: bool) -> Select[Any]:
    """`query` restricted to rows whose `key` is one of the values bound at execution as KEYS
    (`session.execute(statement, {KEYS: [...]})`), looked up key by key on PostgreSQL.

    With `key IN (...)`, PostgreSQL's cached generic plan, or statistics that lag a table growing fast
    (an inbox, a signal log), can prefer a scan that reads every row of the table's other index ranges
    and filters the keys: tens of milliseconds per batch, growing with the table. A LATERAL subquery per
    key (kept whole by OFFSET 0) can only be answered by a lookup on an index that leads with `key`;
    the keys travel as one array parameter, so the statement text is the same for any number of keys.
    A query of one ORM class gets its rows back as objects; a FOR UPDATE in `query` locks them key by
    key, in the order of the values. Build the statement once (it takes more CPU to build than to run)
    and bind the keys, and any other values, at execution.
    """
    if not postgres:
        return query.where(key.in_(bindparam(KEYS, expanding=True)))
    keys = func.unnest(bindparam(KEYS, type_=ARRAY(String))).table_valued("key").render_derived()
    per_key = query.where(key == keys.c.key).offset(0).lateral()
    [first, *others] = query.column_descriptions
    entity = first.get("entity") if not others and first.get("expr") is first.get("entity") else None
    columns = [aliased(entity, per_key)] if entity is not None else list(per_key.c)
    return select(*columns).select_from(keys.join(per_key, true()))


def update_rows(
    session: Session, table: Table, key: str, rows: Sequence[dict[str, Any]], *, columns: Sequence[str] = ()
) -> None:
    """Write each row's values onto the table row whose `key` column equals the row's `key` value.

    On PostgreSQL one UPDATE .. FROM unnest(an array per column): one statement and one execution for
    any number of rows, where an executemany runs the UPDATE once per row. Elsewhere an executemany.
    A JSON column's values travel as an array of their JSON texts, cast back to JSON in the SET (an array
    of JSON values does not bind). Rows may carry different columns: a column a row leaves out keeps its
    stored value (each row then carries a text marking which columns it sets), still in one statement, so
    a batch of rows changed in different ways costs one round trip, not one per set of changed columns.
    `columns`: the columns the statement covers whatever the rows carry (the same statement for any rows,
    prepared once per connection); by default those the rows carry.
    """
    if not rows:
        return
    first = rows[0].keys()
    if not columns and all(row.keys() == first for row in rows):
        names = tuple(first)
        sparse = False
    else:  # in the table's column order, so the same columns make the same statement
        given = {key, *columns} if columns else set().union(*(row.keys() for row in rows))
        names = tuple(c.name for c in table.columns if c.name in given)
        sparse = True
    if not on_postgres(session):
        parameters = [{f"_{n}": row.get(n) for n in names} for row in rows]
        if sparse:
            for row, bound in zip(rows, parameters, strict=True):
                bound.update({f"_set_{n}": n in row for n in names if n != key})
        session.execute(_update_by_key(table, key, names, sparse), parameters)
        return
    statement, json = _update_from_arrays(table, key, names, sparse)
    arrays: dict[str, list[Any]] = {
        f"_{n}": [_json_dumps(row[n]) if n in row else None for row in rows]
        if n in json
        else [row.get(n) for row in rows]
        for n in names
    }
    if sparse:  # per row, one character per column: "1" where the row sets it
        written = [n for n in names if n != key]
        arrays[_WRITTEN] = ["".join("1" if n in row else "0" for n in written) for row in rows]
    session.execute(statement, arrays)


# The statements of update_rows, built once per table and set of columns with the values bound at
# execution: building one (the unnest alias and its columns) and its cache key cost more CPU than
# running it, for consumers that write every batch.
@cache
def _update_by_key(table: Table, key: str, names: tuple[str, ...], sparse: bool = False) -> Any:
    by_key = update(table).where(table.c[key] == bindparam(f"_{key}"))
    if not sparse:
        return by_key.values({n: bindparam(f"_{n}") for n in names if n != key})
    given = {n: bindparam(f"_{n}", type_=table.c[n].type) for n in names if n != key}
    flags = {n: bindparam(f"_set_{n}", type_=Boolean) for n in given}
    return by_key.values({n: case((flags[n], value), else_=table.c[n]) for n, value in given.items()})


@cache
def _update_from_arrays(
    table: Table, key: str, names: tuple[str, ...], sparse: bool = False
) -> tuple[Any, frozenset[str]]:
    json = frozenset(n for n in names if isinstance(table.c[n].type, JSON))
    arrays = [bindparam(f"_{n}", type_=ARRAY(Text) if n in json else ARRAY(table.c[n].type)) for n in names]
    # Which columns each row sets travel as one text per row (a flag array per column would cost a
    # conversion per row and column on the way out).
    written = [bindparam(_WRITTEN, type_=ARRAY(Text))] if sparse else []
    given = func.unnest(*arrays, *written).table_valued(*names, *[_WRITTEN][: len(written)])
    given = given.render_derived(name="given")
    values: dict[str, Any] = {
        n: cast(given.c[n], table.c[n].type) if n in json else given.c[n] for n in names if n != key
    }
    if sparse:
        marks = given.c[_WRITTEN]
        values = {n: case((_sets(marks, i), v), else_=table.c[n]) for i, (n, v) in enumerate(values.items())}
    return update(table).where(table.c[key] == given.c[key]).values(values), json


_WRITTEN = "_written"  # update_rows' bound array of which columns each row sets


def _sets(written: Any, index: int) -> Any:
    """Whether the row's `written` text marks its column `index` (from 0) as set: substr(written, index+1, 1) = '1'."""
    return func.substr(written, literal_column(str(index + 1)), literal_column("1")) == literal_column("'1'")


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


def assign(row: Any, **values: Any) -> None:
    """Set attributes of an ORM row through SQLAlchemy's instrumentation alone.

    For the ORM the same as assigning them one by one (tracked, flushed, visible on the row); a
    SQLModel row's own __setattr__ also runs pydantic's on every assignment, about three times the
    cost, which shows in consumers that update thousands of rows a second.
    """
    for key, value in values.items():
        set_attribute(row, key, value)


def new_row(cls: type[T], **values: Any) -> T:
    """A new (transient) row of a SQLModel table class, built through SQLAlchemy's instrumentation alone.

    The same object as `cls(**values)`: every field not given takes its default (a factory is called),
    and add() then inserts it. SQLModel's constructor sets each field through pydantic's __setattr__ as
    well and asks pydantic for every default, several times the cost, which shows in consumers that
    create rows per event. The instance starts as SQLAlchemy starts a row it loads (class manager's
    new_instance: no __init__) and holds the values in its instance dict, where the ORM reads a new row's
    values for its INSERT. No validation, as for table models anyway.
    """
    row: T = manager_of_class(cls).new_instance()
    object.__setattr__(row, "__pydantic_fields_set__", set(values))  # as the constructor: the fields given
    for name, default, factory in _field_defaults(cls):
        if name not in values:
            values[name] = default() if factory else default
    # A new row has no history to keep: its INSERT takes every value from the instance dict.
    row.__dict__.update(values)
    return row


_FIELD_DEFAULTS: dict[type[Any], tuple[tuple[str, Any, bool], ...]] = {}


def _field_defaults(cls: type[Any]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, default or factory, is a factory) of each field of `cls` with a default (read once per class)."""
    found = _FIELD_DEFAULTS.get(cls)
    if found is None:
        found = _FIELD_DEFAULTS[cls] = tuple(
            (name, info.default_factory, True) if info.default_factory is not None else (name, info.default, False)
            for name, info in cls.model_fields.items()
            if info.default_factory is not None or not info.is_required()
        )
    return found


def on_postgres(session: AsyncSession | Session) -> bool:
    """Whether the session's database is PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(session: AsyncSession | Session) -> Callable[..., postgresql.Insert | sqlite.Insert]:
    """The INSERT construct of the session's database: both offer ON CONFLICT DO NOTHING / DO UPDATE."""
    return postgresql.insert if on_postgres(session) else sqlite.insert


@cache
def insert_rows(table: Table) -> RowWriter:
    """A hold_until_commit writer that inserts the held rows into `table` (one executemany)."""

    def write(session: Session, rows: list[dict[str, Any]]) -> None:
        if rows:
            session.execute(insert(table), rows)

    return write


def hold_until_commit(
    session: AsyncSession | Session, key: str, rows: Sequence[dict[str, Any]], writer: RowWriter
) -> None:
    """Hold rows under `key` and write them with writer(session, rows) just before the transaction commits.

    For append-only rows that nothing reads back in the same transaction (outbox, change logs): a consumer
    batch that adds some per event writes them in one statement instead of one per event, and builds no
    ORM objects for them. Rows keep the order they were held in; keys are written in the order first held.
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
    for writer, rows in held_for_commit(session).rows.values():
        if rows:
            batch = list(rows)
            rows.clear()
            writer(session, batch)


def _drop_held(session: Session) -> None:
    for _, rows in held_for_commit(session).rows.values():
        rows.clear()


def _forget_outbox_writes(session: Session) -> None:
    held_for_commit(session).outbox_written = False


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
