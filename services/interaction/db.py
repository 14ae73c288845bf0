"""The interaction service's table base and the types its models share."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from servicekit import types
from servicekit.runtime_settings import add_settings_tables
from servicekit.tables import add_plumbing_tables


class InteractionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = InteractionTable.metadata
add_plumbing_tables(metadata)
add_settings_tables(metadata)  # run-time settings overrides and their audit

UtcDatetime = types.UtcDatetime  # text only on input, UTC once read
