"""The one SQLite test database of the unit suites: a file with a schema, disposed afterwards.

Each suite's conftest says which schema with a ``database_schema`` fixture; the ``database`` fixture
(tests/unit/conftest.py) creates it for every test that asks for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData

from servicekit.db import Database


@dataclass(frozen=True)
class Schema:
    """A suite's database: its tables, the source its outbox events carry, and rows every test starts with."""

    metadata: MetaData
    source: str
    seed: Callable[[Database], Awaitable[None]] | None = None


@asynccontextmanager
async def sqlite_database(path: Path, metadata: MetaData, *, source: str) -> AsyncIterator[Database]:
    # A file, not :memory:, because every pooled connection to :memory: would be a database of its own.
    database = Database(f"sqlite+aiosqlite:///{path}", source=source)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield database
    finally:
        await database.dispose()
