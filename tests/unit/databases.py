"""The one SQLite test database of the unit suites: a file with a schema, disposed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import MetaData

from servicekit.db import Database


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
