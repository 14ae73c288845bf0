from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from servicekit.db import Database
from services.scoring.main import metadata
from services.scoring.settings import get_settings
from tests.unit.databases import sqlite_database


@pytest.fixture(autouse=True)
def scoring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read from a clean environment, with state kept out of the repository."""
    monkeypatch.setenv("CRM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SCORING_WEIGHTS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with sqlite_database(tmp_path / "scoring.db", metadata, source="/crm/scoring") as db:
        yield db
