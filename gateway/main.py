"""The gateway's app factory: middleware, error format, health, metrics, 360 view and the proxy."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from gateway import health, proxy, view360
from gateway.settings import GatewaySettings
from gateway.upstream import Upstreams
from servicekit.metrics_route import metrics_router
from servicekit.middleware import RequestContextMiddleware
from servicekit.problems import install_problem_handlers

log = logging.getLogger("gateway")


def create_app(
    settings: GatewaySettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the gateway. ``transport`` replaces the HTTP transport to the services (tests only)."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client per process, shared by every request; closed on shutdown.
        app.state.upstreams = Upstreams(settings, transport=transport)
        log.info("gateway started", extra={"port": settings.port, "services": list(settings.service_urls())})
        try:
            yield
        finally:
            await app.state.upstreams.aclose()

    app = FastAPI(title="Customer-retention platform API", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=settings.name)
    app.include_router(health.health_router())
    app.include_router(metrics_router())
    # The 360 route must be registered before the catch-all proxy route, which would match it too.
    app.include_router(view360.router)
    app.include_router(proxy.router)
    return app
