"""The gateway's app factory: middleware, authentication, error format, health, metrics, docs, 360 view, proxy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from gateway import console, health, view360
from gateway.admission import AdmissionControl, admission_policy
from gateway.audit import AuditLog, AuditMiddleware, audit_router
from gateway.auth import Authenticator, GatewayAuthMiddleware
from gateway.authz import OwnerCache
from gateway.bulk_limits import BulkRowLimitMiddleware, RowLimiter
from gateway.canonical import CanonicalPathMiddleware
from gateway.keys import MIGRATIONS_DIR, KeyStore, keys_router
from gateway.openapi import MergedOpenApi, documented_methods
from gateway.proxy import ApiDispatcher, Proxy
from gateway.ratelimit import AuthThrottle, RateLimiter, SharedBuckets
from gateway.settings import GatewaySettings, default_secrets, production_problems
from gateway.upstream import Upstreams
from servicekit import tracing
from servicekit.auth import InternalAuthSettings
from servicekit.db import Database
from servicekit.metrics_route import metrics_router
from servicekit.middleware import RequestContextMiddleware
from servicekit.migrations import upgrade
from servicekit.problems import install_problem_handlers
from servicekit.production import enforce
from servicekit.validation import NUL_GUARD

log = logging.getLogger("gateway")


def app_documented_methods(app: FastAPI) -> Callable[[str], Awaitable[list[str] | None]]:
    async def documented(path: str) -> list[str] | None:
        return documented_methods(await app.state.openapi.document(), path)

    return documented


def create_app(
    settings: GatewaySettings | None = None,
    *,
    connector: Callable[[GatewaySettings], aiohttp.BaseConnector] | None = None,
    internal: InternalAuthSettings | None = None,
) -> FastAPI:
    """Build the gateway. ``connector`` builds the connection pools' connectors to the services (tests: one
    that refuses connections); ``internal`` the CRM_* settings it signs its calls into the services with
    (default: from the environment)."""
    settings = settings or GatewaySettings()
    internal = internal or InternalAuthSettings()
    # Production mode (CRM_PRODUCTION) refuses development secrets and permissive CORS before anything starts.
    enforce(
        settings.platform,
        production_problems(settings, internal),
        default_secrets(settings, internal),
        process="the gateway",
    )
    # On only with OTEL_EXPORTER_OTLP_ENDPOINT; before the engine and the HTTP clients exist (they are instrumented).
    # The proxy passes the trace context on itself (gateway.upstream): no client span per proxied request.
    tracing.setup(settings.name, http_clients=False)
    database = Database(settings.database_url, source="/crm/gateway")
    tracing.instrument_engine(database.engine)
    buckets = SharedBuckets(database)
    key_store = KeyStore(database, pepper=settings.api_key_pepper, cache_s=settings.api_key_cache_s)
    upstreams = Upstreams(settings, connector=connector, internal=internal)
    # Event streams get their own pool, as large as the stream cap.
    stream_upstreams = Upstreams(
        settings.model_copy(update={"max_connections": settings.stream_max_total}),
        connector=connector,
        internal=internal,
    )
    authenticator = Authenticator(settings, key_store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The key table's migrations run in a thread: Alembic drives its own event loop.
        await asyncio.to_thread(upgrade, MIGRATIONS_DIR, settings.database_url, "gateway")
        if not settings.auth:
            log.warning("authentication is OFF (GATEWAY_AUTH=off): every caller acts as an admin")
        log.info("gateway started", extra={"port": settings.port, "services": list(settings.service_urls())})
        try:
            yield
        finally:
            await upstreams.aclose()
            await stream_upstreams.aclose()
            await authenticator.aclose()
            await database.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="Customer-retention platform API",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None,  # the merged document below replaces the gateway's own
        docs_url=None,
        redoc_url=None,
        telemetry=tracing.NATIVE_TELEMETRY_OFF,  # one server span per request: tracing.instrument_app's
    )
    app.state.settings = settings
    app.state.upstreams = upstreams
    app.state.key_store = key_store
    app.state.audit = AuditLog(database)
    app.state.owners = OwnerCache(upstreams, settings.owner_cache_s)
    app.state.admission = AdmissionControl(admission_policy(settings), enabled=settings.admission)
    app.state.openapi = MergedOpenApi(app, upstreams, settings.openapi_cache_s)
    install_problem_handlers(app)
    # Added inside out: request id (outermost, so every answer has one), CORS, audit, authentication, then the
    # dispatcher that hands proxied /api/v1 requests to the proxy, past the router.
    app.add_middleware(
        ApiDispatcher,
        proxy=Proxy(
            upstreams,
            app.state.owners,
            settings.max_body_bytes,
            stream_upstreams,
            app.state.admission,
        ),
        router=app.router,
        documented=app_documented_methods(app),
    )
    # Inside authentication: bulk routes cost their rows of the caller's row quota.
    app.add_middleware(
        BulkRowLimitMiddleware,
        limiter=RowLimiter(buckets, settings.bulk_rows_per_s, settings.rate_burst_factor),
        max_body_bytes=settings.max_body_bytes,
        enabled=settings.rate_limit,
    )
    app.add_middleware(
        GatewayAuthMiddleware,
        settings=settings,
        authenticator=authenticator,
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
    # One canonical path for everything inside (authorization, the audit, the router, the proxy).
    app.add_middleware(CanonicalPathMiddleware)
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

    console.install_docs(app)
    app.include_router(console.console_router(settings))

    # The gateway's own routes refuse NUL characters like every service does; proxied requests are
    # checked by the service that answers them, which names the field in its own terms.
    app.include_router(keys_router(), dependencies=NUL_GUARD)
    app.include_router(audit_router(), dependencies=NUL_GUARD)
    app.include_router(view360.router, dependencies=NUL_GUARD)
    tracing.instrument_app(app, trust_incoming=False)  # a public caller's trace context is not ours
    return app
