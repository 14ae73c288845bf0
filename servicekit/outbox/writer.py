"""Writing events into the outbox inside the caller's transaction. Never commits, never calls Kafka.

One implementation, two doors: the async `enqueue` / `enqueue_raw` for domain code, and the synchronous
`outbox_row` + `write_rows` for code that runs where nothing can be awaited (a session's before-commit
hook, e.g. a write-behind that writes a whole consumer batch just before it commits). The async doors
run the synchronous one through `AsyncSession.run_sync`, so both flag the session the same way.

A transaction that enqueues many times (a consumer batch) can ask for its rows to be written together,
in one statement just before it commits (`write_at_commit`); rows keep the order they were enqueued in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Row, Select, bindparam, exists, func, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from servicekit import tracing
from servicekit.context import current_correlation_id
from servicekit.db import Database, hold_until_commit, holds, mark_outbox_written, take_held
from servicekit.driver import DriverStatement
from servicekit.events.envelope import CONTENT_TYPE, CloudEvent, EventData
from servicekit.ids import uuid4_text
from servicekit.sql import column_arrays, insert_from_arrays, on_postgres
from servicekit.sqlite_statements import InlineInsert
from servicekit.tables import OUTBOX

Headers = list[tuple[str, str]]
NOTIFY_CHANNEL = "outbox"
OUTBOX_HELD = "outbox"  # servicekit.db.hold_until_commit key of rows enqueued but not yet written
DEFAULT_SOURCE = "/crm"


def event_source(session: Session | AsyncSession) -> str:
    """The CloudEvents source of events written through this session (set by servicekit.db.Database)."""
    return session.info.get("source") or DEFAULT_SOURCE


def envelope_row(envelope: CloudEvent, topic: str, created_at: datetime | None = None) -> dict[str, Any]:
    """The outbox row that publishes `envelope` on `topic`, keyed by its subject (the customer id).

    Its Kafka headers carry the envelope's trace context too (when it has one), for the relay's span.
    """
    headers = [["content-type", CONTENT_TYPE], ["ce_type", envelope.type], ["ce_id", envelope.id]]
    if envelope.traceparent:
        headers.append(["traceparent", envelope.traceparent])
        if envelope.tracestate:
            headers.append(["tracestate", envelope.tracestate])
    return {
        "topic": topic,
        "key": envelope.subject,
        "payload": envelope.to_json(),
        "headers": headers,
        "event_id": envelope.id,
        "created_at": created_at or datetime.now(UTC),
    }


def outbox_row(
    data: EventData, *, source: str, correlation_id: str | None, trace: dict[str, str] | None = None
) -> dict[str, Any]:
    """Wrap one event now (its id, time and correlation id are fixed here) and build its outbox row.

    trace: the W3C context of the work that caused the event (servicekit.tracing.current_context_headers()
    where it ran); None takes the current one.
    """
    trace = tracing.current_context_headers() if trace is None else trace
    return _wrapped(data, source, correlation_id, trace, datetime.now(UTC))[1]


def _wrapped(
    data: EventData, source: str, correlation_id: str | None, trace: Mapping[str, str] | None, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CloudEvent.wrap(data, ...) as the envelope's field values, and envelope_row of it, without building
    and validating the envelope model: the same fields, the same JSON (a unit test compares the bytes)."""
    event_type = data.event_type
    if not source:
        raise ValueError("an event's source must not be empty")
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid4_text(),
        "source": source,
        "type": event_type,
        "time": now,
        "subject": data.subject(),
        "datacontenttype": "application/json",
        "dataschema": f"urn:crm:event:{event_type}:v{data.schema_version}",
        "correlationid": correlation_id,
        "traceparent": trace.get("traceparent") if trace else None,
        "tracestate": trace.get("tracestate") if trace else None,
        "data": data.model_dump(mode="json"),
    }
    headers = [["content-type", CONTENT_TYPE], ["ce_type", event_type], ["ce_id", fields["id"]]]
    if fields["traceparent"]:
        headers.append(["traceparent", fields["traceparent"]])
        if fields["tracestate"]:
            headers.append(["tracestate", fields["tracestate"]])
    row = {
        "topic": data.topic,
        "key": fields["subject"],
        # CloudEvent.to_json: None-valued envelope fields left out, those inside data kept.
        "payload": orjson.dumps({k: v for k, v in fields.items() if v is not None}, option=orjson.OPT_UTC_Z),
        "headers": headers,
        "event_id": fields["id"],
        "created_at": now,
    }
    return fields, row


def write_rows(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outbox rows through a synchronous session, in its transaction; usable inside before_commit.

    Flags the session so the relay in this process wakes after the commit (mark_outbox_written), and on
    PostgreSQL notifies the channel relays elsewhere LISTEN on (delivered at commit).
    """
    # Rows held earlier (write_at_commit) are written first: the outbox keeps the order of enqueueing.
    _insert(session, [*take_held(session, OUTBOX_HELD), *rows])


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    # created_at starts the relay's commit -> publish delay: the time the rows are written, which for a
    # batch transaction (write_at_commit) is just before its commit, not when its first event was enqueued.
    written_at = datetime.now(UTC)
    for row in rows:
        row["created_at"] = written_at
    if session.info.get("postgres"):
        session.execute(_insert_arrays(), column_arrays(OUTBOX, _OUTBOX_WRITTEN, rows))
    else:
        session.execute(insert(OUTBOX), rows)
    mark_outbox_written(session)


@cache
def _insert_arrays() -> Any:
    """PostgreSQL: the rows as one array per column, one SQL text for any number of rows (servicekit.sql's
    insert_from_arrays). The NOTIFY rides on the INSERT (one round trip instead of two); PostgreSQL
    delivers it at commit, once per transaction however many rows asked for it."""
    return insert_from_arrays(OUTBOX, _OUTBOX_WRITTEN).returning(func.pg_notify(NOTIFY_CHANNEL, ""))


def write_at_commit(session: AsyncSession) -> None:
    """Hold this transaction's enqueued rows and write them in one statement just before it commits.

    For batch transactions without savepoints (see servicekit.db.hold_until_commit).
    """
    hold_until_commit(session, OUTBOX_HELD, [], _insert)


async def _write(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if holds(session, OUTBOX_HELD):
        hold_until_commit(session, OUTBOX_HELD, rows, _insert)
    else:
        await session.run_sync(write_rows, rows)


async def enqueue(session: AsyncSession, *events: EventData) -> list[CloudEvent]:
    """Add events to the outbox; they are published only if the caller's transaction commits."""
    wrapped = await _enqueue(session, events)
    return [CloudEvent.model_construct(**fields) for fields, _ in wrapped]


async def enqueue_many(session: AsyncSession, events: Sequence[EventData]) -> None:
    """enqueue() for callers that do not need the envelopes back (a batch: building them costs)."""
    await _enqueue(session, events)


async def _enqueue(session: AsyncSession, events: Sequence[EventData]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    source = event_source(session)
    correlation_id, trace = current_correlation_id(), tracing.current_context_headers()
    now = datetime.now(UTC)
    wrapped = [_wrapped(data, source, correlation_id, trace, now) for data in events]
    await _write(session, [row for _, row in wrapped])
    return wrapped


async def enqueue_raw(
    session: AsyncSession, *, topic: str, key: str | None, payload: bytes, headers: Sequence[tuple[str, str]]
) -> None:
    """Add an opaque message (e.g. a dead-lettered original) to the outbox."""
    row = {
        "topic": topic,
        "key": key,
        "payload": payload,
        "headers": [list(h) for h in headers],
        "event_id": None,
        "created_at": datetime.now(UTC),
    }
    await _write(session, [row])


_OUTBOX_WRITTEN = ("topic", "key", "payload", "headers", "event_id", "created_at")  # the columns a row sets
_WITH_EVENTS: dict[tuple[int, int], tuple[ReturningInsert[Any], Select[Any]]] = {}


def _with_events_statement(statement: ReturningInsert[Any], events: int) -> Select[Any]:
    """PostgreSQL: `statement` as a CTE, `events` outbox rows written only if it returned a row, and its
    returned rows with a NOTIFY each. Bound parameters: the statement's own and outbox_{i}_{column}.
    Built once per statement and event count, so its compiled form is cached too."""
    key = (id(statement), events)
    cached = _WITH_EVENTS.get(key)
    if cached is not None:
        return cached[1]
    written = statement.cte("written")
    columns = [OUTBOX.c[name] for name in _OUTBOX_WRITTEN]
    wrote = exists(written.select())
    rows = [
        select(*[bindparam(f"outbox_{i}_{c.name}", type_=c.type) for c in columns]).where(wrote) for i in range(events)
    ]
    outbox = insert(OUTBOX).from_select(columns, rows[0] if events == 1 else union_all(*rows)).cte("events")
    combined = select(written, func.pg_notify(NOTIFY_CHANNEL, "")).add_cte(outbox)
    _WITH_EVENTS[key] = (statement, combined)  # holds the statement, so its id is not reused
    return combined


async def insert_with_events(
    session: AsyncSession, statement: ReturningInsert[Any], params: dict[str, Any], *events: EventData
) -> Row[Any] | None:
    """Run an INSERT .. RETURNING and enqueue `events` only if it returned a row (it may skip the row: ON
    CONFLICT DO NOTHING, INSERT .. SELECT .. WHERE); returns that row, or None when nothing was written.

    On PostgreSQL, in a session that has not begun its transaction, it is one statement in autocommit: the
    row, its outbox rows and the relays' NOTIFY commit together in one round trip instead of four (BEGIN,
    INSERT, outbox INSERT, COMMIT). The caller still calls session.commit() (no round trip; it wakes this
    process's relay). When nothing was written the session is left with no transaction begun, so what the
    caller does next runs in a transaction of its own. Elsewhere it runs in the session's transaction.
    """
    if not (on_postgres(session) and events and not session.in_transaction()):
        row: Row[Any] | None = (await session.execute(statement, params)).first()
        if row is not None and events:
            await enqueue(session, *events)
        return row
    # The connection first: the events' time and created_at (the relay's delay metric) then exclude a
    # wait for a free connection when the pool is busy.
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    bound = _with_events_params(params, events, event_source(session))
    row = (await session.execute(_with_events_statement(statement, len(events)), bound)).first()
    if row is None:
        await session.commit()  # ends the autocommit transaction (no round trip); the next one is real
        return None
    mark_outbox_written(session)
    return row


def _with_events_params(params: Mapping[str, Any], events: Sequence[EventData], source: str) -> dict[str, Any]:
    """The bound values of _with_events_statement: the statement's own, then each event's outbox row
    (wrapped now: its id, time and the current correlation id and trace context)."""
    correlation_id, trace = current_correlation_id(), tracing.current_context_headers()
    bound = dict(params)
    for i, data in enumerate(events):
        row_values = outbox_row(data, source=source, correlation_id=correlation_id, trace=trace)
        bound.update({f"outbox_{i}_{name}": row_values[name] for name in _OUTBOX_WRITTEN})
    return bound


_ON_DRIVER: dict[tuple[int, int, int], DriverStatement] = {}  # (engine, statement, events) -> compiled
_ON_INLINE: dict[tuple[int, int], InlineInsert] = {}  # (engine, statement) -> compiled (SQLite)


async def insert_with_events_on_driver(
    database: Database, statement: ReturningInsert[Any], params: dict[str, Any], *events: EventData
) -> tuple[Any, ...] | None:
    """insert_with_events' one-statement case without a session: the same statement and values (the row,
    its outbox rows and the NOTIFY, committed together in autocommit) run on the asyncpg connection
    (servicekit.driver), and the relay in this process woken when it wrote. Returns the returned row, or
    None when nothing was written. At least one event, on an engine servicekit.driver.usable accepts: on an
    inline SQLite file the session path's statements (BEGIN IMMEDIATE, the INSERT, the outbox rows' insert,
    COMMIT) run on the sqlite3 connection instead (servicekit.sqlite_statements)."""
    if not events:
        raise ValueError("insert_with_events_on_driver writes a row with its events")
    if database.is_sqlite:
        return await _insert_with_events_inline(database, statement, params, events)
    key = (id(database.engine), id(statement), len(events))
    driver = _ON_DRIVER.get(key)
    if driver is None or driver.engine is not database.engine.sync_engine:  # an id reused by a new engine
        driver = _ON_DRIVER[key] = DriverStatement(database.engine, _with_events_statement(statement, len(events)))
    source = database.source or DEFAULT_SOURCE
    # The outbox rows are built once a connection is at hand, as insert_with_events builds them.
    row = await driver.first(lambda: _with_events_params(params, events, source))
    if row is not None:
        database.outbox_committed()
    return row


async def _insert_with_events_inline(
    database: Database, statement: ReturningInsert[Any], params: dict[str, Any], events: Sequence[EventData]
) -> tuple[Any, ...] | None:
    key = (id(database.engine), id(statement))
    inline = _ON_INLINE.get(key)
    if inline is None or inline.engine is not database.engine.sync_engine:  # an id reused by a new engine
        inline = _ON_INLINE[key] = InlineInsert(database.engine, statement, insert(OUTBOX), _OUTBOX_WRITTEN)
    source = database.source or DEFAULT_SOURCE

    def rows() -> list[dict[str, Any]]:
        # Wrapped once the row is written, as enqueue wraps them after the session's INSERT; one created_at
        # for the rows, as _insert gives them.
        correlation_id, trace, now = current_correlation_id(), tracing.current_context_headers(), datetime.now(UTC)
        return [_wrapped(data, source, correlation_id, trace, now)[1] for data in events]

    row = await inline.run(params, rows)
    if row is not None:
        database.outbox_committed()
    return row
