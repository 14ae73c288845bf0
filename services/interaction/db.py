"""The interaction service's table base and the types its models share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from servicekit.tables import add_plumbing_tables
from servicekit.types import as_utc


class InteractionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = InteractionTable.metadata
add_plumbing_tables(metadata)

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
