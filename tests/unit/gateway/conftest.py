from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from gateway.main import create_app
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


@pytest.fixture
async def start_gateway(fakes: dict[str, FakeService]) -> AsyncIterator[StartGateway]:
    """Start a gateway (real uvicorn) in front of the fakes; keyword arguments override settings."""
    servers = Servers()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(servers.stop)

        async def start(transport: httpx.AsyncBaseTransport | None = None, **overrides: Any) -> httpx.AsyncClient:
            values: dict[str, Any] = {f"{name}_url": service.url for name, service in fakes.items()}
            values.update(overrides)
            app = create_app(GatewaySettings(**values), transport=transport)
            url = await servers.start(app)
            return await stack.enter_async_context(httpx.AsyncClient(base_url=url, trust_env=False))

        yield start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> httpx.AsyncClient:
    return await start_gateway()
