"""Which processes open their database pool at start-up: those serving only HTTP (their backends are then flat
from the start); a process that consumes opens its connections as needed (it uses one or two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servicekit.db import Database
from servicekit.service import API, CONSUME, RELAY, create_app
from services.customer.main import SPEC


async def _pools_opened(
    roles: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> list[int]:
    """The sizes of the pools the process opened at start-up."""
    opened: list[Database] = []

    async def record(self: Database) -> int:
        opened.append(self)
        return self.pool_size

    monkeypatch.setattr(Database, "open_pool", record)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = SPEC.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / 'customer.db'}")
    app = create_app(SPEC, settings, roles=roles)
    async with app.router.lifespan_context(app):
        pass
    return [database.pool_size for database in opened]


@pytest.mark.parametrize("roles", [(API,), (API, RELAY)])
async def test_a_process_serving_only_http_opens_its_api_sized_pool_at_start(
    roles: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _pools_opened(roles, tmp_path, monkeypatch) == [8]
    assert await _pools_opened(roles, tmp_path, monkeypatch, CUSTOMER_DB_API_POOL_SIZE="3") == [3]


@pytest.mark.parametrize("roles", [(RELAY,), (API, RELAY, CONSUME)])
async def test_a_process_that_consumes_or_only_relays_opens_connections_as_needed(
    roles: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _pools_opened(roles, tmp_path, monkeypatch) == []


@pytest.mark.parametrize("roles", [(RELAY,), (CONSUME,), (API, RELAY, CONSUME)])
def test_a_process_that_consumes_or_only_relays_keeps_the_general_pool_size(
    roles: tuple[str, ...], tmp_path: Path
) -> None:
    settings = SPEC.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / 'customer.db'}")
    assert create_app(SPEC, settings, roles=roles).state.database.pool_size == 20


async def test_the_setting_turns_opening_at_start_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _pools_opened((API,), tmp_path, monkeypatch, CUSTOMER_DB_POOL_OPEN_AT_START="false") == []


async def test_a_server_not_up_at_start_leaves_the_process_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unreachable at start-up is logged; the connections then open as needed, as before."""

    async def refuse(self: Database) -> int:
        raise OSError("connection refused")

    monkeypatch.setattr(Database, "open_pool", refuse)
    settings = SPEC.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / 'customer.db'}")
    app = create_app(SPEC, settings, roles=(API,))
    async with app.router.lifespan_context(app):
        assert app.state.database is not None
