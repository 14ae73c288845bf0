"""The one SQLite test database of the unit suites: a file with a schema, disposed afterwards.

Each suite's conftest says which schema with a ``database_schema`` fixture; the ``database`` fixture
(tests/unit/conftest.py) creates it for every test that asks for one.

Creating a service's schema (dozens of tables and indexes, then the seed rows) costs tens of milliseconds
of CPU, and about 600 unit tests each need a fresh one. So each test process builds every schema it meets
once, into a template file, and each test gets a byte copy of that file: the same tables and seed rows,
a database of its own (docs/performance/2026-12-07-check-3.md).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData
from sqlalchemy.engine import make_url

from servicekit.db import Database

Seed = Callable[[Database], Awaitable[None]]


@dataclass(frozen=True)
class Schema:
    """A suite's database: its tables, the source its outbox events carry, and rows every test starts with."""

    metadata: MetaData
    source: str
    seed: Seed | None = None


# Removed when the test process exits (TemporaryDirectory's finaliser).
_TEMPLATE_DIR = tempfile.TemporaryDirectory(prefix="crm-unit-schemas-")
_TEMPLATES: dict[Schema, Path] = {}


async def _template(schema: Schema) -> Path:
    """The file holding this schema and seed, built on first use in this process."""
    found = _TEMPLATES.get(schema)
    if found is None:
        found = Path(_TEMPLATE_DIR.name) / f"schema-{len(_TEMPLATES)}.db"
        database = Database(f"sqlite+aiosqlite:///{found}", source=schema.source)
        try:
            async with database.engine.begin() as conn:
                await conn.run_sync(schema.metadata.create_all)
            if schema.seed is not None:
                await schema.seed(database)
        finally:
            # Closing the last connection checkpoints the WAL into the file, so the file alone is the database.
            await database.dispose()
        if found.with_name(found.name + "-wal").exists():
            raise RuntimeError(f"{found}: the WAL outlived its connections; the file alone is not the database")
        _TEMPLATES[schema] = found
    return found


async def install_schema(database: Database, schema: Schema) -> None:
    """Give a not yet opened SQLite ``database`` the schema and its seed rows, as create_all and the seed would."""
    path = make_url(database.url).database
    if not database.is_sqlite or not path:
        raise ValueError(f"{database.url}: install_schema copies SQLite files only")
    _copy_new(await _template(schema), Path(path))


def _copy_new(template: Path, target: Path) -> None:
    # The copy takes a fraction of a millisecond: no point in a thread.
    if target.exists():
        raise FileExistsError(f"{target}: install_schema writes a new database, not over an existing one")
    shutil.copyfile(template, target)


@asynccontextmanager
async def sqlite_database(
    path: Path, metadata: MetaData, *, source: str, seed: Seed | None = None
) -> AsyncIterator[Database]:
    # A file, not :memory:, because every pooled connection to :memory: would be a database of its own.
    database = Database(f"sqlite+aiosqlite:///{path}", source=source)
    try:
        await install_schema(database, Schema(metadata, source, seed))
        yield database
    finally:
        await database.dispose()
