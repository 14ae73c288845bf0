"""Seeding a store migrated to an older revision with today's models (the migrations' backfill tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from servicekit.db import Database


async def seed_with_todays_models(database: Database, metadata: MetaData, seed: Callable[[], Awaitable[None]]) -> None:
    """Run `seed`, which writes through today's models (`metadata`), on a schema of an older revision: the
    columns the models have and the tables lack exist only while it runs (nullable), so the later migrations add them
    as they would on a real store of that revision."""
    async with database.engine.begin() as connection:
        added = await connection.run_sync(_missing_columns, metadata)
        for table, column, type_sql in added:
            await connection.execute(text(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {type_sql}'))
    await seed()
    async with database.engine.begin() as connection:
        for table, column, _ in added:
            await connection.execute(text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))


def _missing_columns(connection: Connection, metadata: MetaData) -> list[tuple[str, str, str]]:
    inspector = inspect(connection)
    missing = []
    for name in inspector.get_table_names():
        table = metadata.tables.get(name)
        if table is None:
            continue
        present = {c["name"] for c in inspector.get_columns(name)}
        for column in table.columns:
            if column.name not in present:
                missing.append((name, column.name, column.type.compile(dialect=connection.dialect)))
    return missing
