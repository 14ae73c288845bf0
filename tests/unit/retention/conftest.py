from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from servicekit.db import Database
from servicekit.service import API, create_app
from services.retention.defaults import DEFAULT_PLAYBOOKS, DEFAULT_RULES
from services.retention.models import metadata
from services.retention.playbooks.models import Playbook
from services.retention.rules.models import AlertRule
from services.retention.settings import RetentionSettings, get_settings
from tests.unit.databases import Schema, install_schema


@pytest.fixture(autouse=True)
def retention_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read from a clean environment, with state kept out of the repository."""
    monkeypatch.setenv("CRM_STATE_DIR", str(tmp_path / "state"))
    # The unit tests' events carry fixed dates: no history horizon unless a test sets one.
    monkeypatch.setenv("RETENTION_ALERT_HISTORY_HORIZON_DAYS", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def seed_defaults(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all([AlertRule(**r) for r in DEFAULT_RULES])
        session.add_all([Playbook(**p) for p in DEFAULT_PLAYBOOKS])


SCHEMA = Schema(metadata, source="/crm/retention", seed=seed_defaults)


async def create_schema(db: Database) -> None:
    """The schema and the default rules and playbooks, as the migration leaves them (db not yet opened)."""
    await install_schema(db, SCHEMA)


@pytest.fixture
def database_schema() -> Schema:
    return SCHEMA


@asynccontextmanager
async def retention_api(path: Path, schema: Schema = SCHEMA) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The retention API (in process) on a new database file at ``path`` with ``schema`` and its seed rows."""
    from services.retention.main import SPEC

    settings = RetentionSettings(database_url=f"sqlite+aiosqlite:///{path}")
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    await install_schema(database, schema)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://retention") as client:
        yield client, database
    await database.dispose()


@pytest.fixture
async def app_db(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    async with retention_api(tmp_path / "api.db") as found:
        yield found
