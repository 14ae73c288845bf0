import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from servicekit.tables import add_plumbing_tables
from tests.unit.databases import Schema

metadata = MetaData()
add_plumbing_tables(metadata)
# A stand-in for a service's own state, changed by the handlers under test.
EFFECTS = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
)


@pytest.fixture
def database_schema() -> Schema:
    return Schema(metadata, source="/crm/test")
