"""What every feature of the scoring service shares: the table base (the service's own MetaData) and
its column helpers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.tables import add_plumbing_tables
from servicekit.types import UtcDateTime


class ScoringTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = ScoringTable.metadata
add_plumbing_tables(metadata)


def ts_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


def json_column(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))
