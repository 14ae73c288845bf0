"""Plumbing tables every service database holds: the outbox and the inbox.

The Table objects here are used for reads and writes; add_plumbing_tables copies them into a service's
own MetaData so that the service's migrations create them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

_metadata = MetaData()

OUTBOX = Table(
    "outbox",
    _metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=True),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("event_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    # The relay's scan: unpublished rows in id order, kept small by a partial index.
    Index(
        "ix_outbox_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
    Index("ix_outbox_published_at", "published_at"),
)

INBOX = Table(
    "inbox",
    _metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("event_type", String(100), nullable=True),
    Column("outcome", String(20), nullable=False),  # handled | dead_lettered
    Column("handled_at", DateTime(timezone=True), nullable=False),
)


def add_plumbing_tables(metadata: MetaData) -> None:
    for table in (OUTBOX, INBOX):
        table.to_metadata(metadata)


def table_of(model: type[Any]) -> Table:
    """The Table of a SQLModel table class: ``model.__table__``, which SQLModel does not declare to type checkers."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table
