"""servicekit.db's PostgreSQL-only statement forms, run on the real server (SQLite takes other forms)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Float, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database
from servicekit.sql import KEYS, for_each_key, update_rows
from servicekit.types import UtcDateTime
from tests.e2e.conftest import database_url
from tests.statements import statements_sent

_metadata = MetaData()
_ROWS = Table(
    "db_helper_rows",
    _metadata,
    Column("id", String, primary_key=True),
    Column("risk", Float),
    Column("since", UtcDateTime, nullable=True),
    Column("evidence", JSON, nullable=False),
    prefixes=["TEMPORARY"],
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def session(postgres: None) -> AsyncIterator[AsyncSession]:
    """A transaction on the real server with a temporary table of three rows; rolled back afterwards."""
    database = Database(database_url("retention"))
    async with database.sessions() as session, session.begin():
        await session.run_sync(lambda s: _metadata.create_all(s.connection()))
        await session.execute(
            _ROWS.insert(), [{"id": f"r-{i}", "risk": 0.0, "since": T0, "evidence": []} for i in (1, 2, 3)]
        )
        yield session
        await session.rollback()
    await database.dispose()


async def _stored(session: AsyncSession) -> dict[str, tuple[float, datetime | None, Any]]:
    return {r.id: (r.risk, r.since, r.evidence) for r in await session.execute(select(_ROWS))}


async def test_update_rows_writes_every_rows_values_by_key_in_one_statement(session: AsyncSession):
    rows = [
        {"id": "r-3", "risk": 0.3, "since": None, "evidence": [{"name": "complaints", "weight": 0.5}]},
        {"id": "r-1", "risk": 0.1, "since": datetime(2026, 2, 1, 12, tzinfo=UTC), "evidence": ["e-1", "é"]},
        {"id": "r-9", "risk": 0.9, "since": None, "evidence": []},  # no such row: nothing written
    ]
    with statements_sent(session.bind.sync_engine) as statements:  # type: ignore[union-attr]
        await session.run_sync(lambda s: update_rows(s, _ROWS, "id", rows))

    assert len(statements) == 1
    assert "unnest" in statements[0]
    assert await _stored(session) == {
        "r-1": (0.1, datetime(2026, 2, 1, 12, tzinfo=UTC), ["e-1", "é"]),
        "r-2": (0.0, T0, []),
        "r-3": (0.3, None, [{"name": "complaints", "weight": 0.5}]),
    }


async def test_update_rows_keeps_what_a_row_leaves_out_and_still_sends_one_statement(session: AsyncSession):
    since = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        {"id": "r-1", "risk": 0.1},  # leaves since and evidence as stored
        {"id": "r-2", "since": None, "evidence": ["e-2"]},  # a None that is written, not kept
        {"id": "r-3", "risk": 0.3, "since": since},
    ]
    with statements_sent(session.bind.sync_engine) as statements:  # type: ignore[union-attr]
        await session.run_sync(lambda s: update_rows(s, _ROWS, "id", rows))

    assert len(statements) == 1
    assert await _stored(session) == {"r-1": (0.1, T0, []), "r-2": (0.0, None, ["e-2"]), "r-3": (0.3, since, [])}


async def test_for_each_key_reads_the_listed_keys_rows_on_postgresql(session: AsyncSession):
    unchanged = select(_ROWS.c.id).where(_ROWS.c.risk == 0.0)
    query = for_each_key(unchanged, _ROWS.c.id, postgres=True)
    assert sorted((await session.execute(query, {KEYS: ["r-1", "r-3", "r-7"]})).scalars()) == ["r-1", "r-3"]
    assert list((await session.execute(query, {KEYS: ["r-2"]})).scalars()) == ["r-2"]
