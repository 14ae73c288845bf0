"""Every route the services offer is reachable through the gateway, guarded by a permission, and documented."""

import importlib
from pathlib import Path
from typing import Any

import pytest

from gateway.openapi import METHODS, merge
from gateway.routes import API_PREFIX, permission_for, resolve
from runner.launcher import SERVICES
from servicekit.service import API, create_app

INTERNAL = ("/health/", "/metrics")
GATEWAY_DOC = {"openapi": "3.1.0", "info": {"title": "gw", "version": "1"}, "paths": {}}


def _service_documents(tmp_path: Path) -> dict[str, dict[str, Any]]:
    documents = {}
    for name in SERVICES:
        spec = importlib.import_module(f"services.{name}.main").SPEC
        settings = spec.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / name}.db")
        documents[name] = create_app(spec, settings, roles=(API,)).openapi()
    return documents


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _service_documents(tmp_path_factory.mktemp("openapi"))


def test_every_service_route_is_routed_to_its_service_and_needs_a_permission(documents) -> None:
    for service, document in documents.items():
        for path, item in document["paths"].items():
            if path.startswith(INTERNAL):
                continue
            example = API_PREFIX + path.replace("{", "x").replace("}", "")
            resolved = resolve(example)
            assert resolved is not None and resolved.service == service, (service, path)
            for method in set(item) & set(METHODS):
                assert permission_for(method.upper(), example) is not None, (method, path)


def test_the_merged_document_publishes_every_service_route_with_its_permission(documents) -> None:
    merged = merge(GATEWAY_DOC, documents)

    for document in documents.values():
        for path, item in document["paths"].items():
            if path.startswith(INTERNAL):
                continue
            published = merged["paths"][API_PREFIX + path]
            for method in set(item) & set(METHODS):
                assert published[method]["x-permission"], (method, path)
    assert merged["paths"]["/api/v1/integrations/parked"]["get"]["x-permission"] == "integrations:read"
