"""Bulk-imported interactions on the real server: the rows travel as one JSON document
(servicekit.sql.insert_from_json) and PostgreSQL stores exactly what the array-per-column INSERT stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text

from servicekit.db import Database
from servicekit.sql import column_arrays, insert_from_arrays, insert_new_rows
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.store import COLUMNS, new_draft
from services.interaction.models import metadata
from tests.e2e.conftest import database_url
from tests.unit.interaction.conftest import SLA_HOURS

DB = "interaction_bulk_insert"
TABLE = Interaction.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def database(postgres: None) -> AsyncIterator[Database]:
    admin = await asyncpg.connect(database_url("postgres").replace("+asyncpg", ""))
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    database = Database(database_url(DB))
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()
        await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await admin.close()


def _rows() -> list[dict[str, Any]]:
    """Every kind of value an import carries: decimals at the column's edges, offsets, quotes and non-ASCII text."""
    bodies: list[dict[str, Any]] = [
        {"type": "purchase", "amount": "19.99", "currency": "EUR", "quantity": 3, "order_id": "o-1"},
        {
            "type": "purchase",
            "amount": "999999999999.99",
            "currency": "USD",
            "occurred_at": "2025-03-01T10:00:00.123456+02:00",
        },
        {"type": "purchase", "amount": 0.1, "currency": "GBP", "offer_code": "SPRING", "initiated_by": "customer"},
        {"type": "complaint", "severity": "high", "category": "delivery", "text": 'Late "again"\\ \n naïve ☃'},
        {"type": "survey", "survey": "nps", "score": 0, "category": "support"},
        {"type": "call", "channel": "Phone", "sentiment": -0.3333333333333333, "rating": 5},
        {"type": "email"},
    ]
    drafts = []
    for n, body in enumerate(bodies):
        data = InteractionCreate.model_validate({"customer_id": f"c-{n}", "external_id": f"x-{n}", **body})
        drafts.append(vars(new_draft(data, SLA_HOURS, datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))))
    drafts[-1]["due_at"] = datetime(2026, 2, 1, 12, 0)  # naive: taken as UTC, as UtcDateTime binds it
    return drafts


async def _stored(database: Database) -> list[tuple[Any, ...]]:
    async with database.sessions() as session:
        rows = await session.execute(select(*[TABLE.c[n] for n in COLUMNS]).order_by(TABLE.c.external_id))
        return [tuple(row) for row in rows]


async def test_rows_sent_as_one_json_document_store_the_values_the_per_column_arrays_stored(database: Database):
    rows = _rows()
    names = tuple(rows[0])
    async with database.transaction() as session:
        arrays = insert_from_arrays(TABLE, names).returning(TABLE.c.id)
        await session.execute(arrays, column_arrays(TABLE, names, rows))
    by_arrays = await _stored(database)
    async with database.transaction() as session:
        await session.execute(text("TRUNCATE interactions"))
    async with database.transaction() as session:
        inserted = await insert_new_rows(session, TABLE, rows, skip_conflicts_on="external_id", returning="id")
    assert sorted(inserted) == sorted(r["id"] for r in rows)
    by_json = await _stored(database)
    assert by_json == by_arrays
    amounts = {row[COLUMNS.index("external_id")]: row[COLUMNS.index("amount")] for row in by_json}
    assert amounts["x-1"] == Decimal("999999999999.99") and amounts["x-2"] == Decimal("0.10")


async def test_a_taken_external_id_is_skipped_and_only_the_new_rows_ids_come_back(database: Database):
    first, second = _rows()[:2]
    async with database.transaction() as session:
        assert await insert_new_rows(session, TABLE, [first], skip_conflicts_on="external_id", returning="id") == [
            first["id"]
        ]
    again = {**first, "id": "another-id"}
    async with database.transaction() as session:
        inserted = await insert_new_rows(
            session, TABLE, [again, second], skip_conflicts_on="external_id", returning="id"
        )
    assert inserted == [second["id"]]
    assert [row[COLUMNS.index("id")] for row in await _stored(database)] == [first["id"], second["id"]]
