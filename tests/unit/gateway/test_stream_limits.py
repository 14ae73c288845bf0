"""Event streams at the gateway: capped per caller and in total (429 + Retry-After), on their own pool,
cut when the upstream goes silent; ordinary requests keep flowing while the caps are reached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
from fastapi import FastAPI
from starlette.responses import StreamingResponse

from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import PROBLEM, Servers

SSE = {"Accept": "text/event-stream"}


def _endless_stream(release: asyncio.Event, keepalive_s: float | None = 0.05) -> FastAPI:
    """A retention stand-in whose stream stays open until ``release`` (silent if keepalive_s is None)."""
    app = FastAPI()

    @app.get("/alerts/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            while not release.is_set():
                if keepalive_s is None:
                    await release.wait()
                else:
                    await asyncio.sleep(keepalive_s)
                    yield b": keepalive\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/alerts")
    async def alerts() -> dict[str, object]:
        return {"items": [], "total": 0, "limit": 50, "offset": 0}

    return app


async def _open(stack: AsyncExitStack, client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    response = await stack.enter_async_context(client.stream("GET", "/api/v1/alerts/stream", headers=headers))
    return response


async def test_streams_beyond_the_per_caller_cap_are_429_with_retry_after(start_gateway: StartGateway) -> None:
    release = asyncio.Event()
    servers = Servers()
    try:
        url = await servers.start(_endless_stream(release))
        gateway = await start_gateway(retention_url=url, stream_max_per_principal=2, stream_max_total=10)
        async with AsyncExitStack() as stack:
            first = await _open(stack, gateway, SSE)
            second = await _open(stack, gateway, SSE)
            assert (first.status_code, second.status_code) == (200, 200)
            third = await gateway.get("/api/v1/alerts/stream", headers=SSE)
            assert third.status_code == 429
            assert third.headers["content-type"] == PROBLEM
            assert int(third.headers["retry-after"]) >= 1
            assert third.json()["type"].endswith("too_many_streams")
            # Another caller is not held to this caller's cap, and plain requests still pass.
            other = await _open(stack, gateway, {**SSE, **bearer("admin", sub="someone-else")})
            assert other.status_code == 200
            assert (await gateway.get("/api/v1/alerts")).status_code == 200
        # Closed streams give their slots back.
        release.set()
        await asyncio.sleep(0.2)
        release.clear()
        async with AsyncExitStack() as stack:
            again = await _open(stack, gateway, SSE)
            assert again.status_code == 200
            release.set()
    finally:
        release.set()
        await servers.stop()


async def test_streams_beyond_the_total_cap_are_429_for_everyone(start_gateway: StartGateway) -> None:
    release = asyncio.Event()
    servers = Servers()
    try:
        url = await servers.start(_endless_stream(release))
        gateway = await start_gateway(retention_url=url, stream_max_per_principal=5, stream_max_total=2)
        async with AsyncExitStack() as stack:
            for sub in ("a", "b"):
                assert (await _open(stack, gateway, {**SSE, **bearer("admin", sub=sub)})).status_code == 200
            refused = await gateway.get("/api/v1/alerts/stream", headers={**SSE, **bearer("admin", sub="c")})
            assert refused.status_code == 429
            assert "retry-after" in refused.headers
            release.set()
    finally:
        release.set()
        await servers.stop()


async def test_a_silent_upstream_stream_is_cut_after_the_read_timeout(start_gateway: StartGateway) -> None:
    release = asyncio.Event()
    servers = Servers()
    try:
        url = await servers.start(_endless_stream(release, keepalive_s=None))
        gateway = await start_gateway(retention_url=url, stream_read_timeout_s=0.3, stream_max_per_principal=1)
        async with gateway.stream("GET", "/api/v1/alerts/stream", headers=SSE) as response:
            assert response.status_code == 200
            # Ends by itself (instead of holding a connection forever) once the upstream is silent.
            body = await asyncio.wait_for(response.aread(), 5)
        assert body == b": connected\n\n"
        # ...and its slot is free again.
        async with gateway.stream("GET", "/api/v1/alerts/stream", headers=SSE) as response:
            assert response.status_code == 200
            release.set()
    finally:
        release.set()
        await servers.stop()
