from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servicekit.db import Database
from tests.unit.databases import Schema, sqlite_database


@pytest.fixture
async def database(tmp_path: Path, database_schema: Schema) -> AsyncIterator[Database]:
    """A fresh SQLite database with the suite's schema (its conftest's ``database_schema``) and seed."""
    schema = database_schema
    async with sqlite_database(tmp_path / "unit.db", schema.metadata, source=schema.source, seed=schema.seed) as db:
        yield db
