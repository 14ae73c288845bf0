"""Writes the gateway's merged OpenAPI document, built the way the gateway serves it, for the console's client.

    python console/export_openapi.py [--write console/openapi.json]

The gateway merges the services' documents at run time (gateway.openapi.merge); here each service's
document comes from its app built in process, so no service needs to run. console/src/api/schema.d.ts
is generated from this file by openapi-typescript (`make console-api`); tests/unit/gateway/
test_console_api.py fails when either committed file differs from what generation gives now.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.app import create_app as create_gateway  # noqa: E402
from gateway.openapi import merge  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402
from runner.launcher import SERVICES  # noqa: E402
from servicekit.service import API, create_app  # noqa: E402

TARGET = ROOT / "console" / "openapi.json"


def merged_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        services: dict[str, dict[str, Any] | None] = {}
        for name in SERVICES:
            spec = importlib.import_module(f"services.{name}.main").SPEC
            settings = spec.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp}/{name}.db")
            services[name] = create_app(spec, settings, roles=(API,)).openapi()
        gateway = create_gateway(GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp}/gateway.db"))
        return merge(gateway.state.openapi.gateway_document(), services)


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, default=None, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    text = render(merged_document())
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
