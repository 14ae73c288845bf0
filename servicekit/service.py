"""What a service declares about itself, and the app factory that turns it into a running process.

A process runs one or more roles: ``api`` (HTTP routes), ``relay`` (outbox -> Kafka) and ``consume``
(Kafka -> handlers). Every process serves health and metrics, whatever its roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import MetaData

from servicekit import tracing
from servicekit.auth import InternalAuthMiddleware, InternalAuthSettings
from servicekit.db import Database
from servicekit.direct import install_direct_routes
from servicekit.health import health_router
from servicekit.inbox.consumer import BatchHook, EventConsumer, Handlers
from servicekit.metrics_route import metrics_router
from servicekit.middleware import RequestContextMiddleware
from servicekit.migrations import current_revision, head_revision
from servicekit.outbox.relay import OutboxRelay
from servicekit.problems import install_problem_handlers
from servicekit.production import default_internal_secrets, enforce, service_problems
from servicekit.runtime_settings import Tunable, settings_router
from servicekit.settings import ServiceSettings
from servicekit.validation import NUL_GUARD

log = logging.getLogger("servicekit.service")

API, RELAY, CONSUME = "api", "relay", "consume"
ALL_ROLES = (API, RELAY, CONSUME)


@dataclass(frozen=True)
class ServiceComponents:
    """The service's own code that the api and consume roles run (a relay runs none of it)."""

    routers: Sequence[APIRouter] = ()
    handlers: Handlers = field(default_factory=dict)
    # Optional: loads what a consumed batch touches before its handlers run (see EventConsumer).
    before_batch: BatchHook | None = None
    # Extra long-running loops a service needs in its consume role (e.g. an SLA watcher).
    background: Sequence[Callable[[FastAPI], Coroutine[Any, Any, None]]] = ()


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    settings_cls: type[ServiceSettings]
    metadata: MetaData
    migrations_dir: Path
    # Dotted name of the module whose COMPONENTS (a ServiceComponents) are the service's routes, handlers
    # and loops. Imported only by a process whose roles run them: a relay-only process stays small (the
    # scoring service's code brings the numeric stack, over 100 MiB).
    components: str = ""
    consumes: Sequence[str] = ()
    version: str = "0.1.0"
    # Settings an administrator may change at run time (servicekit.runtime_settings); its routes come with them.
    tunable: tuple[Tunable, ...] = ()

    def load_components(self) -> ServiceComponents:
        if not self.components:
            return ServiceComponents()
        found = import_module(self.components).COMPONENTS
        if not isinstance(found, ServiceComponents):
            raise TypeError(f"{self.components}.COMPONENTS is not a ServiceComponents")
        return found


async def _after_migrations(
    database: Database, spec: ServiceSpec, head: str | None, loop: Callable[[], Awaitable[None]]
) -> None:
    """Start consuming only once the schema is at head: a consumer that ran against a missing table would
    dead-letter good events. (Separate consumer processes may start before the API process migrates.)"""
    while await current_revision(database, spec.name) != head:
        log.info("waiting for migrations before consuming", extra={"head": head})
        await asyncio.sleep(1.0)
    await loop()


def _serves_only_http(roles: Sequence[str]) -> bool:
    """An HTTP process (with or without a relay): its pool is DB_API_POOL_SIZE, opened at start-up."""
    return API in roles and CONSUME not in roles


async def _open_pool(database: Database) -> None:
    """Open the HTTP process's pool up front; a server not up yet only means they open as needed instead."""
    try:
        opened = await database.open_pool()
    except Exception as exc:
        log.warning("could not open the database pool at start-up", extra={"error": repr(exc)})
        return
    if opened:
        log.info("database pool opened", extra={"connections": opened})


def create_app(spec: ServiceSpec, settings: ServiceSettings | None = None, roles: Sequence[str] = ALL_ROLES) -> FastAPI:
    settings = settings or spec.settings_cls()
    roles = tuple(roles)
    internal = InternalAuthSettings()
    # Before anything opens a connection: production mode refuses development secrets and plaintext.
    enforce(
        settings.platform,
        [*service_problems(settings.kafka, internal), *settings.secret_problems()],
        [*default_internal_secrets(internal), *settings.default_secrets()],
        process=f"the {spec.name} service",
    )
    # On only with OTEL_EXPORTER_OTLP_ENDPOINT; before the engine and the HTTP clients exist (they are instrumented).
    tracing.setup(spec.name)
    database = Database(
        settings.database_url,
        source=settings.event_source,
        pool_size=settings.db_api_pool_size if _serves_only_http(roles) else settings.db_pool_size,
        echo=settings.log_sql,
        application_name=f"{spec.name} {'+'.join(roles)}",
    )
    tracing.instrument_engine(database.engine)
    relay = OutboxRelay(database, settings) if RELAY in roles else None
    components = spec.load_components() if API in roles or CONSUME in roles else ServiceComponents()
    consumer = (
        EventConsumer(database, settings, components.handlers, spec.consumes, components.before_batch)
        if CONSUME in roles and spec.consumes
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.migration_head = head_revision(spec.migrations_dir)
        if _serves_only_http(roles) and settings.db_pool_open_at_start:
            await _open_pool(database)
        loops: list[Coroutine[Any, Any, Any]] = []
        if relay:
            loops.append(relay.run())
        if consumer:
            loops.append(_after_migrations(database, spec, app.state.migration_head, consumer.run))
        if CONSUME in roles:
            loops.extend(job(app) for job in components.background)
        tasks = [asyncio.create_task(loop) for loop in loops]
        log.info("service started", extra={"roles": list(roles), "port": settings.port})
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await database.dispose()
            tracing.shutdown()

    # Every route refuses NUL characters before they can reach PostgreSQL (servicekit.validation).
    app = FastAPI(
        title=spec.title,
        version=spec.version,
        lifespan=lifespan,
        dependencies=NUL_GUARD,
        telemetry=tracing.NATIVE_TELEMETRY_OFF,  # one server span per request: tracing.instrument_app's
    )
    app.state.spec = spec
    app.state.settings = settings
    app.state.database = database
    app.state.relay = relay
    app.state.consumer = consumer
    app.state.roles = roles
    install_problem_handlers(app)
    # Inside the request-context middleware, so a refused call still gets its X-Request-ID.
    app.add_middleware(InternalAuthMiddleware, settings=internal)
    app.add_middleware(RequestContextMiddleware, service=spec.name)
    app.include_router(health_router())
    app.include_router(metrics_router())
    if API in roles:
        for router in components.routers:
            app.include_router(router)
        if spec.tunable:
            app.include_router(settings_router(spec.name, spec.tunable))
    install_direct_routes(app)  # routes marked @direct: their plain case skips routing and dependencies
    tracing.instrument_app(app)
    return app
