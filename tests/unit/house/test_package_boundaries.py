"""Imports only go down: runner -> services and gateway -> servicekit and contracts; never back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("customer", "interaction", "scoring", "retention")


def _imported_modules(package: Path) -> dict[str, set[str]]:
    """file (relative to the repository) -> the absolute modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{file} imports {module}"
        for file, modules in _imported_modules(ROOT / package).items()
        for module in sorted(modules)
        if module.split(".")[0] in forbidden
        or any(module == f or module.startswith(f + ".") for f in forbidden if "." in f)
    ]


def test_the_library_imports_no_service_gateway_runner_or_cli() -> None:
    assert _violations("servicekit", ("services", "gateway", "runner", "cli")) == []


def test_the_event_contracts_import_no_service_gateway_runner_or_cli() -> None:
    assert _violations("contracts", ("services", "gateway", "runner", "cli")) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_gateway_runner_or_cli(service: str) -> None:
    others = tuple(f"services.{name}" for name in SERVICES if name != service)
    assert _violations(f"services/{service}", ("gateway", "runner", "cli", *others)) == []


def test_the_gateway_and_cli_reach_services_over_http_only() -> None:
    assert _violations("gateway", ("services", "runner", "cli")) == []
    assert _violations("cli", ("services", "runner", "gateway")) == []


def test_the_gateway_calls_out_with_one_http_client() -> None:
    clients = {"httpx", "aiohttp", "requests", "urllib3"}
    used = {module.split(".")[0] for modules in _imported_modules(ROOT / "gateway").values() for module in modules}
    assert used & clients == {"aiohttp"}
