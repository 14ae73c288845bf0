from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from servicekit.db import Database
from services.scoring.models import metadata
from services.scoring.settings import get_settings


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
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'scoring.db'}", source="/crm/scoring")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.dispose()
