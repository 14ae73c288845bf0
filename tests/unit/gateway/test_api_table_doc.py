"""The API table in docs/api.md lists exactly the routes the platform serves under /api/v1."""

import importlib
import re
from pathlib import Path

from gateway.app import create_app as create_gateway
from gateway.openapi import METHODS
from gateway.routes import API_PREFIX
from gateway.settings import GatewaySettings
from runner.launcher import SERVICES
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT

INTERNAL = ("/health/", "/metrics")  # each process's own, not routed by the gateway
Route = tuple[str, str]  # (method, path with every parameter written {})


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _documented_routes() -> set[Route]:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    section = text.split("\n## ", 1)[0]
    routes = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 3 or not re.fullmatch(r"[A-Z]+(, [A-Z]+)*", cells[0]):
            continue
        for method in cells[0].split(", "):
            routes |= {(method, _normal(path)) for path in re.findall(r"`(/[^`]*)`", cells[1])}
    return routes


def _served_routes(tmp_path: Path) -> set[Route]:
    paths: dict[str, dict] = {}
    for name in SERVICES:
        spec = importlib.import_module(f"services.{name}.main").SPEC
        settings = spec.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / name}.db")
        document = create_app(spec, settings, roles=(API,)).openapi()
        paths |= {API_PREFIX + p: item for p, item in document["paths"].items() if not p.startswith(INTERNAL)}
    gateway = create_gateway(GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway'}.db"))
    paths |= gateway.openapi()["paths"]
    return {
        (method.upper(), _normal(path.removeprefix(API_PREFIX)))
        for path, item in paths.items()
        if path.startswith(API_PREFIX + "/")
        for method in set(item) & set(METHODS)
    }


def test_the_api_table_in_the_docs_lists_exactly_the_served_routes(tmp_path: Path) -> None:
    readme, served = _documented_routes(), _served_routes(tmp_path)
    assert len(readme) > 40  # the table was found and read
    assert sorted(served - readme) == [], "served but missing from the API table in docs/api.md"
    assert sorted(readme - served) == [], "in the API table in docs/api.md but not served"
