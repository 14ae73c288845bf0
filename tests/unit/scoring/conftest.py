from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scoring.main import metadata
from services.scoring.settings import get_settings
from tests.unit.databases import Schema


@pytest.fixture(autouse=True)
def scoring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read from a clean environment, with state kept out of the repository."""
    monkeypatch.setenv("CRM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SCORING_WEIGHTS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def database_schema() -> Schema:
    return Schema(metadata, source="/crm/scoring")
