from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from servicekit.db import Database
from services.retention.models import metadata
from services.retention.settings import get_settings


@pytest.fixture(autouse=True)
def retention_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read from a clean environment, with state kept out of the repository."""
    monkeypatch.setenv("CRM_STATE_DIR", str(tmp_path / "state"))
    for name in ("RETENTION_RISK_THRESHOLD", "RETENTION_SEVERE_COMPLAINT_SEVERITIES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}", source="/crm/retention")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.dispose()
