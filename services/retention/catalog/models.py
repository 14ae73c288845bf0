"""The catalog token: one row renewed by triggers on any change of rules, playbooks or webhooks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection
from sqlmodel import Field

from services.retention.db import (
    RetentionTable,
    metadata,
)


class CatalogVersion(RetentionTable, table=True):
    """One row: a token that triggers on rules, playbooks and webhooks set to a new random value on any change.

    Processes keep those three tables in memory and read only this token per transaction (catalog.py).
    """

    __tablename__ = "catalog_version"

    id: int = Field(default=1, primary_key=True)
    token: str = Field(max_length=32)


CATALOG_TABLES = ("rules", "playbooks", "webhooks")
_SQLITE_CHANGES = ("INSERT", "UPDATE", "DELETE")  # SQLite has row triggers only, one per kind of change


def catalog_version_ddl(dialect: str) -> list[str]:
    """The token's first row and the triggers that renew it; the migration and create_all both run these."""
    first = f"INSERT INTO catalog_version (id, token) VALUES (1, '{uuid.uuid4().hex}')"
    if dialect == "postgresql":
        renew = (
            "CREATE FUNCTION renew_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE catalog_version SET token = md5(random()::text || clock_timestamp()::text); RETURN NULL; END $$"
        )
        return [
            first,
            renew,
            *(
                f"CREATE TRIGGER {table}_renew_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION renew_catalog_version()"
                for table in CATALOG_TABLES
            ),
        ]
    return [
        first,
        *(
            f"CREATE TRIGGER {table}_{change.lower()}_renew_catalog_version AFTER {change} ON {table} "
            "BEGIN UPDATE catalog_version SET token = lower(hex(randomblob(16))); END"
            for table in CATALOG_TABLES
            for change in _SQLITE_CHANGES
        ),
    ]


def drop_catalog_version_ddl(dialect: str) -> list[str]:
    """Undoes catalog_version_ddl's triggers (the migration's downgrade)."""
    if dialect == "postgresql":
        return [
            *(f"DROP TRIGGER {table}_renew_catalog_version ON {table}" for table in CATALOG_TABLES),
            "DROP FUNCTION renew_catalog_version()",
        ]
    return [
        f"DROP TRIGGER {table}_{change.lower()}_renew_catalog_version"
        for table in CATALOG_TABLES
        for change in _SQLITE_CHANGES
    ]


@event.listens_for(metadata, "after_create")
def _create_catalog_version(target: MetaData, connection: Connection, **kw: Any) -> None:
    # create_all (tests, scratch databases) gets the same row and triggers as a migrated database.
    created = {t.name for t in kw.get("tables") or target.sorted_tables}
    if {CatalogVersion.__tablename__, *CATALOG_TABLES} <= created:
        for statement in catalog_version_ddl(connection.dialect.name):
            connection.exec_driver_sql(statement)
