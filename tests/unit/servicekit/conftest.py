from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from servicekit.db import Database
from servicekit.tables import add_plumbing_tables
from tests.unit.databases import sqlite_database

metadata = MetaData()
add_plumbing_tables(metadata)
# A stand-in for a service's own state, changed by the handlers under test.
EFFECTS = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with sqlite_database(tmp_path / "test.db", metadata, source="/crm/test") as db:
        yield db
