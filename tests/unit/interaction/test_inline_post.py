"""POST /interactions' common case on the inline SQLite connection (servicekit.sqlite_statements) against the
session's path, on SQLite files: the same answers, rows, outbox rows, statements, relay wake-ups, errors
and SQL spans (tests/e2e/test_interaction_driver_path.py pins the same on PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import bindparam, event, insert

import servicekit.sqlite as sqlite_module
import servicekit.sqlite_statements as statements_module
import services.interaction.interactions.store as store_module
from servicekit.driver import usable
from servicekit.errors import is_transient
from servicekit.sqlite_statements import InlineInsert
from servicekit.tables import OUTBOX
from services.interaction.replica.models import KnownCustomer
from tests.unit.interaction.post_paths import SURVEY, Side, answer, side_on
from tests.unit.interaction.test_direct_post import COMPLAINT, PURCHASE, REQUESTS

# Requests whose common case writes nothing, so the session's path takes the checks after it.
FALLBACKS = {"a repeat by external_id", "an external_id reused for another type", "an unknown customer"}


@contextlib.asynccontextmanager
async def side(tmp_path: Path, inline: bool) -> AsyncIterator[Side]:
    path = tmp_path / f"{'inline' if inline else 'session'}.db"
    async with side_on(f"sqlite+aiosqlite:///{path}", inline, path) as each:
        yield each


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    async with side(tmp_path, True) as inline, side(tmp_path, False) as session:
        assert usable(inline.database.engine)  # a file database: its connections run in the event loop
        # A first post reads the run-time settings (the session's path on both sides); after it the
        # inline side takes its common case on the sqlite3 connection.
        for each in (inline, session):
            assert (await each.post(json=PURCHASE)).status_code == 201
        yield inline, session


@pytest.mark.parametrize("case", REQUESTS)
async def test_every_answer_row_event_and_statement_is_the_session_paths(pair: tuple[Side, Side], case: str) -> None:
    spec = REQUESTS[case]
    answers = []
    for each in pair:
        with each.counting():
            if "before" in spec:
                await each.post(json={**spec["before"], "external_id": "x-2"})
            kwargs = {k: v for k, v in spec.items() if k in ("json", "content", "headers", "params")}
            response = await each.post(**kwargs)
            if spec.get("twice"):
                response = await each.post(**kwargs)
        answers.append(answer(response))
    inline, session = pair
    assert answers[0] == answers[1]
    assert await inline.rows() == await session.rows()
    assert inline.wakes == session.wakes
    if case in FALLBACKS:
        # The last post's common case wrote nothing: its transaction ends there and the checks begin their
        # own (the session's path goes on in the one it began).
        last = max(i for i, sql in enumerate(session.statements) if sql == "BEGIN IMMEDIATE")
        assert "INSERT INTO interactions" in session.statements[last + 1]
        expected = [*session.statements[: last + 2], "BEGIN IMMEDIATE", *session.statements[last + 2 :]]
        assert inline.statements == expected
    else:
        assert inline.statements == session.statements


async def test_plain_posts_without_listeners_write_the_same_rows_and_events(
    pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    inline, session = pair
    runs: list[bool] = []
    run = InlineInsert.run

    async def counted(self: InlineInsert, *args: Any) -> Any:
        runs.append((returned := await run(self, *args)) is not None)
        return returned

    monkeypatch.setattr(InlineInsert, "run", counted)
    for body in (PURCHASE, COMPLAINT, SURVEY, {**PURCHASE, "external_id": "e-1"}, {**PURCHASE, "external_id": "e-1"}):
        answers = [answer(await each.post(json=body)) for each in pair]
        assert answers[0] == answers[1]
    assert runs == [True, True, True, True, False]  # the inline side's posts, all on the sqlite3 connection
    assert await inline.rows() == await session.rows()
    assert inline.wakes == session.wakes == 5  # four new interactions and the first post; the repeat wrote nothing
    with inline.counting():  # a complaint: its row and two events, in three statements the listeners see
        await inline.post(json=COMPLAINT)
    assert inline.statements[0] == "BEGIN IMMEDIATE" and len(inline.statements) == 3
    assert "INSERT INTO interactions" in inline.statements[1] and "INSERT INTO outbox" in inline.statements[2]


async def test_the_statements_and_values_are_sqlalchemys(pair: tuple[Side, Side]) -> None:
    sent: dict[bool, list[tuple[str, Any, bool]]] = {}
    for each in pair:
        seen: list[tuple[str, Any, bool]] = []

        def record(
            _c: Any, _cur: Any, sql: str, parameters: Any, _ctx: Any, many: bool, seen: list[Any] = seen
        ) -> None:
            rows = [list(p) for p in parameters] if many else list(parameters)
            seen.append((sql, rows, many))

        event.listen(each.database.engine.sync_engine, "before_cursor_execute", record)
        try:
            assert (await each.post(json={**COMPLAINT, "external_id": "v-1"})).status_code == 201
        finally:
            event.remove(each.database.engine.sync_engine, "before_cursor_execute", record)
        sent[each.fast] = seen
    inline, session = sent[True], sent[False]
    assert [(sql, many) for sql, _, many in inline] == [(sql, many) for sql, _, many in session]
    # The values differ only where ids, times and payloads do; their types and count are the same.
    for (_, ours, _), (_, theirs, _) in zip(inline, session, strict=True):
        assert repr([type(v) for v in ours]) == repr([type(v) for v in theirs])


async def test_a_constraint_error_is_sqlalchemys_error_and_the_file_is_left_free(
    pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two posts given the same id: the second breaks the primary key (the external_id conflict is skipped).
    monkeypatch.setattr(store_module, "uuid4_text", lambda: "00000000-0000-4000-8000-000000000001")
    answers = []
    for each in pair:
        first = await each.post(json=PURCHASE)
        second = await each.post(json=PURCHASE)
        answers.append((answer(first), answer(second)))
    assert answers[0] == answers[1] and answers[0][1][0] >= 400
    monkeypatch.undo()
    for each in pair:  # nothing of the failed post was kept, and the file's queue was handed on
        assert (await each.post(json=COMPLAINT)).status_code == 201
    inline, session = pair
    assert await inline.rows() == await session.rows()

    table = KnownCustomer.__table__  # type: ignore[attr-defined]
    row = {"customer_id": "c-1", "version": 1, "erased": False, "owner_known": False, "profile_known": False}
    duplicate = (
        insert(table).values({name: bindparam(name) for name in row} | {"updated_at": bindparam("at")}).returning(table)
    )
    database = inline.database
    with pytest.raises(Exception) as through_sqlalchemy:
        async with database.engine.begin() as conn:
            await conn.execute(duplicate, {**row, "at": datetime.now(UTC)})
    with pytest.raises(Exception) as inline_error:
        await InlineInsert(database.engine, duplicate, insert(OUTBOX), ["topic"]).run(
            {**row, "at": datetime.now(UTC)}, list
        )
    errors = [through_sqlalchemy.value, inline_error.value]
    assert [type(e).__name__ for e in errors] == ["IntegrityError"] * 2
    assert str(errors[0]).splitlines()[0] == str(errors[1]).splitlines()[0]
    assert not is_transient(errors[1])


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's writer on the file (a CLI command): its write lock held until released."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.rollback()
        other.close()


async def test_a_file_locked_elsewhere_is_a_503_on_both_paths(
    pair: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LOCK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(statements_module, "LOCK_TIMEOUT_S", 0.2)
    answers = []
    for each in pair:
        with write_lock_held(each.path):
            locked = await each.post(json=PURCHASE)
        answers.append((answer(locked), (await each.post(json=PURCHASE)).status_code))
    assert answers[0] == answers[1]
    assert answers[0][0][0] == 503 and answers[0][1] == 201


async def test_a_lock_released_meanwhile_is_waited_for_with_the_event_loop_free(pair: tuple[Side, Side]) -> None:
    inline, session = pair
    for each in pair:
        with write_lock_held(each.path) as other:
            posted = asyncio.create_task(each.post(json=COMPLAINT))
            await asyncio.sleep(0.05)
            assert not posted.done()  # waiting, and this coroutine ran meanwhile
            other.rollback()
            assert (await posted).status_code == 201
    assert await inline.rows() == await session.rows()


async def test_tracing_gets_the_same_sql_spans(pair: tuple[Side, Side]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engines = [each.database.engine.sync_engine for each in pair]
    SQLAlchemyInstrumentor().instrument(engines=engines, tracer_provider=provider, skip_dep_check=True)
    spans = []
    try:
        for each in pair:
            exporter.clear()
            assert (await each.post(json=COMPLAINT)).status_code == 201
            file = str(each.path)  # each side's own file, named in the spans
            spans.append(
                [
                    (
                        s.name.replace(file, "FILE"),
                        s.kind,
                        s.status.status_code,
                        {k: str(v).replace(file, "FILE") for k, v in (s.attributes or {}).items()},
                    )
                    for s in exporter.get_finished_spans()
                    if "db.statement" in (s.attributes or {})  # statements (a pool may also open a connection)
                ]
            )
    finally:
        SQLAlchemyInstrumentor().uninstrument()
    assert spans[0] == spans[1]
    assert any("INSERT INTO interactions" in str(attributes) for *_, attributes in spans[0])
