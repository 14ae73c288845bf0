"""The gateway's app factory: middleware, authentication, error format, health, metrics, docs, 360 view, proxy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from gateway import health, view360
from gateway.audit import AuditLog, AuditMiddleware, audit_router
from gateway.auth import Authenticator, GatewayAuthMiddleware
from gateway.authz import OwnerCache
from gateway.keys import MIGRATIONS_DIR, KeyStore, check_store, keys_router, production_mode
from gateway.openapi import MergedOpenApi
from gateway.proxy import ApiDispatcher, Proxy
from gateway.ratelimit import AuthThrottle, RateLimiter, SharedBuckets
from gateway.settings import DEV_API_KEY_PEPPER, DEV_JWT_SECRET, GatewaySettings
from gateway.upstream import Upstreams
from servicekit.db import Database
from servicekit.metrics_route import metrics_router
from servicekit.middleware import RequestContextMiddleware
from servicekit.migrations import upgrade
from servicekit.problems import install_problem_handlers
from servicekit.validation import NUL_GUARD

log = logging.getLogger("gateway")


def create_app(
    settings: GatewaySettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the gateway. ``transport`` replaces the HTTP transport to the services (tests only)."""
    settings = settings or GatewaySettings()
    # Keys, rate buckets and the audit log must be shared by every replica: no SQLite in production.
    check_store(settings.database_url, production=production_mode())
    database = Database(settings.database_url, source="/crm/gateway")
    buckets = SharedBuckets(database)
    key_store = KeyStore(database, pepper=settings.api_key_pepper, cache_s=settings.api_key_cache_s)
    upstreams = Upstreams(settings, transport=transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The key table's migrations run in a thread: Alembic drives its own event loop.
        await asyncio.to_thread(upgrade, MIGRATIONS_DIR, settings.database_url, "gateway")
        if not settings.auth:
            log.warning("authentication is OFF (GATEWAY_AUTH=off): every caller acts as an admin")
        elif settings.jwt_secret == DEV_JWT_SECRET or settings.api_key_pepper == DEV_API_KEY_PEPPER:
            log.warning(
                "using the local development JWT secret or API-key pepper; set GATEWAY_JWT_SECRET and "
                "GATEWAY_API_KEY_PEPPER outside local runs"
            )
        log.info("gateway started", extra={"port": settings.port, "services": list(settings.service_urls())})
        try:
            yield
        finally:
            await upstreams.aclose()
            await database.dispose()

    app = FastAPI(
        title="Customer-retention platform API",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,  # the merged document below replaces the gateway's own
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.upstreams = upstreams
    app.state.key_store = key_store
    app.state.audit = AuditLog(database)
    app.state.owners = OwnerCache(upstreams, settings.owner_cache_s)
    app.state.openapi = MergedOpenApi(app, upstreams, settings.openapi_cache_s)
    install_problem_handlers(app)
    # Added inside out: request id (outermost, so every answer has one), CORS, audit, authentication, then the
    # dispatcher that hands proxied /api/v1 requests to the proxy, past the router.
    app.add_middleware(
        ApiDispatcher,
        proxy=Proxy(upstreams, app.state.owners, settings.max_body_bytes),
        router=app.router,
    )
    app.add_middleware(
        GatewayAuthMiddleware,
        settings=settings,
        authenticator=Authenticator(settings, key_store),
        limiter=RateLimiter(
            buckets,
            settings.rate_limits,
            settings.rate_burst_factor,
            batch_fraction=settings.rate_batch_fraction,
            batch_ttl_s=settings.rate_batch_s,
        ),
        throttle=AuthThrottle(buckets, failures=settings.auth_failures, per_minute=settings.auth_failures_per_minute),
    )
    # Outside authentication, so denied attempts on audited routes are recorded with their caller.
    app.add_middleware(AuditMiddleware, audit=app.state.audit)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key", "x-request-id", "if-match", "idempotency-key"],
            expose_headers=["x-request-id", "location", "retry-after", "etag"],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, service=settings.name)
    app.include_router(health.health_router())
    app.include_router(metrics_router())

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> Response:
        doc: dict[str, Any] = await app.state.openapi.document()
        return Response(orjson.dumps(doc), media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title + " - docs")

    # The gateway's own routes refuse NUL characters like every service does; proxied requests are
    # checked by the service that answers them, which names the field in its own terms.
    app.include_router(keys_router(), dependencies=NUL_GUARD)
    app.include_router(audit_router(), dependencies=NUL_GUARD)
    app.include_router(view360.router, dependencies=NUL_GUARD)
    return app
