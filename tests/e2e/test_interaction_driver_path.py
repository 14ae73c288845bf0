"""POST /interactions' common case on the asyncpg connection (servicekit.driver) against the session's path,
on PostgreSQL: the same answers, rows, outbox rows, statements, relay wake-ups, errors and SQL spans."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import bindparam, event, insert

from servicekit.auth import current_settings
from servicekit.db import Database
from servicekit.driver import DriverStatement
from servicekit.errors import is_transient
from servicekit.outbox.writer import _with_events_params, _with_events_statement
from services.interaction.interactions.models import InteractionCreate
from services.interaction.interactions.service import _active_insert
from services.interaction.interactions.store import events_of, new_draft, row_values
from services.interaction.replica.models import KnownCustomer
from tests.e2e.conftest import new_database
from tests.unit.interaction.conftest import SLA_HOURS
from tests.unit.interaction.post_paths import SURVEY, Side, answer, side_on
from tests.unit.interaction.test_direct_post import COMPLAINT, PURCHASE, REQUESTS


@contextlib.asynccontextmanager
async def side(driver: bool) -> AsyncIterator[Side]:
    async with new_database() as url, side_on(url, driver) as each:
        yield each


@pytest.fixture
async def pair(postgres: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Side, Side]]:
    # Called as the unit tests call apps: without the gateway's signature (the same check on both sides).
    monkeypatch.setenv("CRM_INTERNAL_AUTH", "off")
    current_settings.cache_clear()
    async with side(True) as driver, side(False) as session:
        # A first post reads the run-time settings (the session's path on both sides); after it the
        # driver side takes its common case on the driver.
        for each in (driver, session):
            assert (await each.post(json=PURCHASE)).status_code == 201
        yield driver, session


@pytest.mark.parametrize("case", REQUESTS)
async def test_every_answer_row_event_and_statement_is_the_session_paths(pair: tuple[Side, Side], case: str):
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
    driver, session = pair
    assert answers[0] == answers[1]
    assert driver.statements == session.statements
    assert await driver.rows() == await session.rows()
    assert driver.wakes == session.wakes


async def test_plain_posts_without_listeners_write_the_same_rows_and_events(pair: tuple[Side, Side]):
    driver, session = pair
    for body in (PURCHASE, COMPLAINT, SURVEY, {**PURCHASE, "external_id": "e-1"}, {**PURCHASE, "external_id": "e-1"}):
        answers = [answer(await each.post(json=body)) for each in pair]
        assert answers[0] == answers[1]
    assert await driver.rows() == await session.rows()
    assert driver.wakes == session.wakes == 5  # four new interactions and the first post; the repeat wrote nothing
    with driver.counting():  # and the driver's statement is one the listeners see
        await driver.post(json=COMPLAINT)
    assert len(driver.statements) == 1 and "INSERT INTO interactions" in driver.statements[0]


async def test_the_driver_sends_sqlalchemys_statement_and_values(pair: tuple[Side, Side]):
    driver, _ = pair
    database = driver.database
    statement = _with_events_statement(_active_insert(True), 2)

    draft = new_draft(InteractionCreate(**COMPLAINT), SLA_HOURS)
    bound = _with_events_params(row_values(draft), events_of(draft), "/crm/interaction")
    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        sent.append((sql, list(parameters)))

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with database.engine.connect() as conn:
            await conn.execute(statement, bound)
            await conn.rollback()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    compiled = DriverStatement(database.engine, statement)
    assert sent == [(compiled.sql, compiled.arguments(bound))]


async def test_a_driver_error_is_sqlalchemys_error(pair: tuple[Side, Side]):
    driver, _ = pair
    database = driver.database
    table = KnownCustomer.__table__  # type: ignore[attr-defined]
    row = {
        "customer_id": "c-1",
        "version": 1,
        "erased": False,
        "owner_known": False,
        "profile_known": False,
        "updated_at": datetime.now(UTC),
    }
    duplicate = insert(table).values({name: bindparam(name) for name in row}).returning(table.c.customer_id)
    errors = []
    with pytest.raises(Exception) as through_sqlalchemy:
        async with database.engine.connect() as conn:
            await conn.execute(duplicate, row)
    errors.append(through_sqlalchemy.value)
    with pytest.raises(Exception) as on_driver:
        await DriverStatement(database.engine, duplicate).first(row)
    errors.append(on_driver.value)
    assert [type(e) for e in errors] == [type(errors[0])] * 2 and type(errors[0]).__name__ == "IntegrityError"
    assert [str(e).splitlines()[0] for e in errors] == [str(errors[0]).splitlines()[0]] * 2
    assert "c-1" not in str(errors[1]).split("[SQL")[1]  # bound values hidden, as the engine hides them
    assert not is_transient(errors[1])


async def _terminate_connections(database: Database) -> None:
    url = database.url.replace("+asyncpg", "")
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()


async def test_a_lost_connection_is_a_503_and_the_next_post_reconnects(pair: tuple[Side, Side]):
    answers = []
    for each in pair:
        await _terminate_connections(each.database)
        lost = await each.post(json=PURCHASE)
        again = await each.post(json=PURCHASE)
        answers.append((answer(lost), again.status_code))
    assert answers[0] == answers[1]
    assert answers[0][0][0] == 503 and answers[0][1] == 201


async def test_tracing_gets_the_same_sql_span(pair: tuple[Side, Side]):
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
            [span] = [s for s in exporter.get_finished_spans() if "INSERT INTO interactions" in str(s.attributes)]
            attributes = {k: v for k, v in (span.attributes or {}).items() if "name" not in k}
            spans.append((span.name, span.kind, span.status.status_code, attributes))
    finally:
        SQLAlchemyInstrumentor().uninstrument()
    assert spans[0] == spans[1]
    assert "INSERT INTO interactions" in str(spans[0][3])
