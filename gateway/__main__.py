"""``python -m gateway [--host H] [--port P]``: serve the public API."""

from __future__ import annotations

import argparse

import uvicorn

from gateway.main import create_app
from gateway.settings import GatewaySettings
from servicekit.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Public HTTP API of the platform")
    parser.add_argument("--port", type=int, help="HTTP port (default GATEWAY_PORT or 8000)")
    parser.add_argument("--host", help="bind address (default GATEWAY_HOST or 127.0.0.1)")
    args = parser.parse_args(argv)

    settings = GatewaySettings()
    if args.port is not None:
        settings.port = args.port
    if args.host:
        settings.host = args.host
    configure_logging(settings.name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
