"""``python -m gateway [serve] [--host H] [--port P]``, plus local tokens and API keys.

python -m gateway token --sub alice --role agent [--ttl 3600] [--team bob,carol]
python -m gateway key create --name erp --role integration [--scopes alerts:read,interactions:write]
python -m gateway key list
python -m gateway key revoke <id>
python -m gateway migrate
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import jwt
import uvicorn

from gateway.app import create_app
from gateway.keys import MIGRATIONS_DIR, ApiKeyCreate, KeyStore, describe
from gateway.routes import ROLE_PERMISSIONS
from gateway.settings import GatewaySettings
from servicekit.db import Database
from servicekit.logging import configure_logging
from servicekit.migrations import upgrade


def issue_token(settings: GatewaySettings, *, sub: str, role: str, ttl_s: int, team: list[str] | None = None) -> str:
    """A local HS256 token the gateway with the same GATEWAY_JWT_SECRET accepts."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if team:
        claims["team"] = team
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


async def _keys(settings: GatewaySettings, args: argparse.Namespace) -> int:
    database = Database(settings.database_url, source="/crm/gateway")
    store = KeyStore(database, pepper=settings.api_key_pepper, cache_s=0)
    try:
        if args.key_command == "create":
            scopes = [s for s in args.scopes.split(",") if s] if args.scopes is not None else None
            created = await store.create(ApiKeyCreate(name=args.name, role=args.role, scopes=scopes), created_by="cli")
            print(created.key)
            print(f"id {created.id}: shown once; store it now", file=sys.stderr)
        elif args.key_command == "list":
            listed = await store.list(include_revoked=True, limit=200, offset=0)
            for item in listed.items:
                print(item.model_dump_json())
        elif args.key_command == "revoke":
            row = await store.revoke(args.id)
            if row is None:
                print(f"no key {args.id}", file=sys.stderr)
                return 1
            print(describe(row))
        return 0
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Public HTTP API of the platform")
    parser.add_argument("--port", type=int, help="HTTP port (default GATEWAY_PORT or 8000)")
    parser.add_argument("--host", help="bind address (default GATEWAY_HOST or 127.0.0.1)")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("migrate", help="migrate the API-key store to head, then exit")
    token = commands.add_parser("token", help="print a local JWT (HS256, GATEWAY_JWT_SECRET)")
    token.add_argument("--sub", required=True, help="the user, e.g. an agent id that owns customers")
    token.add_argument("--role", required=True, choices=sorted(ROLE_PERMISSIONS))
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.add_argument("--team", default="", help="manager only: comma-separated agent ids of the team")
    key = commands.add_parser("key", help="manage API keys for integrations")
    key_commands = key.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", default="integration", choices=sorted(ROLE_PERMISSIONS))
    create.add_argument("--scopes", help="comma-separated subset of the role's permissions")
    key_commands.add_parser("list", help="list keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    args = parser.parse_args(argv)

    settings = GatewaySettings()
    if args.command == "token":
        team = [t for t in args.team.split(",") if t]
        print(issue_token(settings, sub=args.sub, role=args.role, ttl_s=args.ttl, team=team))
        return
    if args.command == "key":
        # Alembic runs its async migrations in an event loop of its own: before this command's, not inside it.
        upgrade(MIGRATIONS_DIR, settings.database_url, "gateway")
        sys.exit(asyncio.run(_keys(settings, args)))
    if args.command == "migrate":
        upgrade(MIGRATIONS_DIR, settings.database_url, "gateway")
        return
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
