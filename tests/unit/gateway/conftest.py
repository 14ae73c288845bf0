from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from gateway.__main__ import issue_token
from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from tests.unit.gateway.fakes import FakeService, Servers

StartGateway = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeService]]:
    services = {name: FakeService(name) for name in SERVICES}
    servers = Servers()
    try:
        for service in services.values():
            service.url = await servers.start(service.app())
        yield services
    finally:
        # Let any request parked on /slow finish so the servers stop promptly.
        for service in services.values():
            service.release.set()
        await servers.stop()


def bearer(role: str = "admin", sub: str = "tester", team: list[str] | None = None) -> dict[str, str]:
    """An Authorization header with a token the test gateway (default local secret) accepts."""
    return {"Authorization": f"Bearer {issue_token(GatewaySettings(), sub=sub, role=role, ttl_s=600, team=team)}"}


@pytest.fixture
async def start_gateway(fakes: dict[str, FakeService], tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start a gateway (real uvicorn) in front of the fakes; keyword arguments override settings.

    The client authenticates as an admin unless ``as_role`` says otherwise (None: no credentials).
    """
    servers = Servers()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(servers.stop)

        async def start(
            connector: Callable[[GatewaySettings], aiohttp.BaseConnector] | None = None,
            as_role: str | None = "admin",
            **overrides: Any,
        ) -> httpx.AsyncClient:
            values: dict[str, Any] = {f"{name}_url": service.url for name, service in fakes.items()}
            values["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
            values.update(overrides)
            app = create_app(GatewaySettings(**values), connector=connector)
            url = await servers.start(app)
            headers = bearer(as_role) if as_role else {}
            return await stack.enter_async_context(httpx.AsyncClient(base_url=url, trust_env=False, headers=headers))

        yield start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> httpx.AsyncClient:
    return await start_gateway()
