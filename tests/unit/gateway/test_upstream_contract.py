"""Contract: every service route the gateway itself calls for an access decision or the 360 view exists.

The gateway's unit tests run against fakes that answer any path, which once hid that retention served no
GET /tasks/{id} (every agent's task completion was a 404). These tests ask the real service apps.
"""

from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.routing import Match

from gateway.authz import OWNER_LOOKUP, resource_lookup
from gateway.routes import API_PREFIX, PERMISSIONS, WILDCARD, Scope
from gateway.view360 import parts
from servicekit.service import API, create_app


@pytest.fixture(scope="module")
def service_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FastAPI]:
    from services.customer.main import SPEC as CUSTOMER
    from services.interaction.main import SPEC as INTERACTION
    from services.retention.main import SPEC as RETENTION
    from services.scoring.main import SPEC as SCORING

    state: Path = tmp_path_factory.mktemp("apps")
    apps = {}
    for name, spec in (("customer", CUSTOMER), ("interaction", INTERACTION), ("scoring", SCORING),
                       ("retention", RETENTION)):  # fmt: skip
        settings = spec.settings_cls(database_url=f"sqlite+aiosqlite:///{state / name}.db")
        apps[name] = create_app(spec, settings, roles=(API,))
    return apps


def serves(app: FastAPI, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def gateway_upstream_calls() -> list[tuple[str, str, str]]:
    """(why, service, path) for every GET the gateway sends on its own account."""
    service, path = OWNER_LOOKUP
    calls = [("owner lookup", service, path.replace("{id}", "id-1"))]
    for rule in PERMISSIONS:
        if rule.scope is Scope.RESOURCE:
            public = API_PREFIX + "/" + "/".join("id-1" if p == WILDCARD else p for p in rule.pattern)
            lookup = resource_lookup(public)
            assert lookup is not None, public
            calls.append((f"{sorted(rule.methods)} {public}", lookup.service, lookup.upstream_path))
    calls += [(f"360 {part.name}", part.service, path) for part, path, _ in parts("id-1", 20)]
    return calls


def test_the_gateway_checks_objects_of_every_resource_kind() -> None:
    looked_up = {path for _, _, path in gateway_upstream_calls()}
    assert {"/customers/id-1", "/tasks/id-1", "/alerts/id-1", "/interactions/id-1", "/complaints/id-1"} <= looked_up


def test_every_route_the_gateway_calls_for_access_checks_and_the_360_view_is_served_by_its_service(
    service_apps: dict[str, FastAPI],
) -> None:
    missing = [
        (why, service, path)
        for why, service, path in gateway_upstream_calls()
        if not serves(service_apps[service], "GET", path)
    ]
    assert missing == []
