"""Command line of every service: ``python -m services.<name> [all|api|relay|consume|migrate]``."""

from __future__ import annotations

import argparse
import gc
import logging

import uvicorn

from servicekit.logging import configure_logging
from servicekit.migrations import upgrade
from servicekit.service import ALL_ROLES, API, ServiceSpec, create_app


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{spec.name}", description=spec.title)
    parser.add_argument(
        "command",
        nargs="?",
        default="all",
        help="all (= api,relay,consume), one role or a comma-separated list of roles, or migrate (to head, then exit)",
    )
    parser.add_argument("--port", type=int, help="HTTP port (health and metrics are served in every role)")
    parser.add_argument("--host", help="bind address")
    parser.add_argument("--no-migrate", action="store_true", help="do not migrate before starting")
    args = parser.parse_args(argv)
    roles = _roles(parser, args.command)

    settings = spec.settings_cls()
    if args.port is not None:
        settings.port = args.port
    if args.host:
        settings.host = args.host
    configure_logging(spec.name, settings.log_level)
    log = logging.getLogger("servicekit.runner")

    if args.command == "migrate" or (API in roles and not args.no_migrate):
        upgrade(spec.migrations_dir, settings.database_url, spec.name)
        log.info("database at head", extra={"database": _safe_url(settings.database_url)})
        if args.command == "migrate":
            return

    app = create_app(spec, settings, roles)
    freeze_startup_objects()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def freeze_startup_objects() -> None:
    """Take what the process has built so far out of the cyclic garbage collector's sight.

    Modules, schemas, the app and its routes live as long as the process, and a full collection scans
    every tracked object: with them in its view, each one costs the process a pause proportional to the
    whole program, several times a minute in a busy consumer. Frozen (after collecting what is garbage
    already), those collections scan only what the work has allocated since.
    """
    gc.collect()
    gc.freeze()


def _roles(parser: argparse.ArgumentParser, command: str) -> tuple[str, ...]:
    if command == "migrate":
        return ()
    if command == "all":
        return ALL_ROLES
    roles = tuple(dict.fromkeys(part.strip() for part in command.split(",")))
    unknown = [r for r in roles if r not in ALL_ROLES]
    if unknown or not roles:
        parser.error(f"unknown role(s) {unknown}; choose from all, migrate, {', '.join(ALL_ROLES)}")
    return roles


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
