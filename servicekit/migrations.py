"""Alembic, driven from code: one migrations folder and version table per service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.db import Database
from servicekit.tables import INBOX, OUTBOX


def version_table(service: str) -> str:
    return f"{service}_alembic_version"


def alembic_config(migrations_dir: Path, url: str, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    cfg.attributes["service"] = service
    return cfg


def upgrade(migrations_dir: Path, url: str, service: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations_dir, url, service), revision)


def head_revision(migrations_dir: Path) -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return ScriptDirectory.from_config(cfg).get_current_head()


async def current_revision(database: Database, service: str) -> str | None:
    async with database.engine.connect() as conn:
        try:
            row = (await conn.execute(text(f"SELECT version_num FROM {version_table(service)}"))).first()
        except Exception:
            return None
    return row[0] if row else None


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    config = context.config
    service = config.attributes.get("service") or config.get_main_option("service")
    url = config.get_main_option("sqlalchemy.url") or ""
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table": version_table(str(service)),
        "render_as_batch": url.startswith("sqlite"),  # SQLite alters tables by copying them
        "compare_type": True,
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def _run(connection: Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def _main() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(_main())


def create_plumbing_tables(op: Operations) -> None:
    """Create the outbox and inbox, with their indexes, in a service's initial migration.

    Built from servicekit.tables, the definitions the relay and the consumer use, so every service
    gets the same DDL. Because it reads the current definitions, a later change to OUTBOX or INBOX
    must come with a revision in each service that also works on a fresh database, where this
    initial revision already created the new shape.
    """
    for table in (OUTBOX, INBOX):
        # create_table copies columns that belong to another Table; indexes are named by column.
        op.create_table(table.name, *table.columns, *table.constraints)
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            op.create_index(
                str(index.name), table.name, [c.name for c in index.columns], unique=index.unique, **index.kwargs
            )


def drop_plumbing_tables(op: Operations) -> None:
    """The downgrade of create_plumbing_tables (dropping a table drops its indexes)."""
    for table in (INBOX, OUTBOX):
        op.drop_table(table.name)
