"""The console's typed client is the frontend teams' contract test: the committed OpenAPI document and the
TypeScript types generated from it must be what generation gives now (`make console-api` refreshes both)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "console"
GENERATOR = CONSOLE / "node_modules" / ".bin" / "openapi-typescript"


def _exporter():
    spec = importlib.util.spec_from_file_location("export_openapi", CONSOLE / "export_openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document_text() -> str:
    exporter = _exporter()
    return exporter.render(exporter.merged_document())


def test_the_committed_openapi_is_the_gateways_merged_document(document_text):
    committed = (CONSOLE / "openapi.json").read_text(encoding="utf-8")
    assert committed == document_text, "the API changed: run `make console-api` and commit the result"


def test_the_document_the_console_reads_has_the_routes_it_calls(document_text):
    for path in ('"/api/v1/alerts"', '"/api/v1/scores/summary"', '"/api/v1/customers/{customer_id}/360"'):
        assert path in document_text


@pytest.mark.skipif(
    not GENERATOR.exists() or shutil.which("node") is None,
    reason="console/node_modules missing: `make console` installs it (make test does)",
)
def test_the_committed_typescript_client_is_what_openapi_typescript_generates(tmp_path, document_text):
    source = tmp_path / "openapi.json"
    source.write_text(document_text, encoding="utf-8")
    target = tmp_path / "schema.d.ts"
    subprocess.run([str(GENERATOR), str(source), "-o", str(target)], check=True, capture_output=True, cwd=CONSOLE)
    committed = (CONSOLE / "src" / "api" / "schema.d.ts").read_text(encoding="utf-8")
    assert committed == target.read_text(encoding="utf-8"), "run `make console-api` and commit the result"
