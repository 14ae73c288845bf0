"""Command line of every service: ``python -m services.<name> [all|api|relay|consume|migrate]``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from servicekit.logging import configure_logging
from servicekit.migrations import upgrade
from servicekit.service import ALL_ROLES, API, CONSUME, RELAY, ServiceSpec, create_app

COMMANDS = {"all": ALL_ROLES, "api": (API,), "relay": (RELAY,), "consume": (CONSUME,)}


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{spec.name}", description=spec.title)
    parser.add_argument(
        "command",
        nargs="?",
        default="all",
        choices=[*COMMANDS, "migrate"],
        help="roles to run (all = api + relay + consume), or migrate the database to head and exit",
    )
    parser.add_argument("--port", type=int, help="HTTP port (health and metrics are served in every role)")
    parser.add_argument("--host", help="bind address")
    parser.add_argument("--no-migrate", action="store_true", help="do not migrate before starting")
    args = parser.parse_args(argv)

    settings = spec.settings_cls()
    if args.port is not None:
        settings.port = args.port
    if args.host:
        settings.host = args.host
    configure_logging(spec.name, settings.log_level)
    log = logging.getLogger("servicekit.runner")

    if args.command == "migrate" or (args.command in ("all", "api") and not args.no_migrate):
        upgrade(spec.migrations_dir, settings.database_url, spec.name)
        log.info("database at head", extra={"database": _safe_url(settings.database_url)})
        if args.command == "migrate":
            return

    app = create_app(spec, settings, COMMANDS[args.command])
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
