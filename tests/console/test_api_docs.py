"""The API's reference for frontend teams, on the real platform: Swagger UI at /docs renders in a browser that may
reach nothing but the gateway, and the console's committed client is generated from what the gateway serves."""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route

from servicekit.settings import REPO_ROOT
from tests.platform import GATEWAY

pytestmark = pytest.mark.e2e


async def test_the_docs_render_every_operation_with_no_request_leaving_the_gateway(gateway, browser: Browser) -> None:
    gateway_host = urlsplit(GATEWAY).netloc
    elsewhere: list[str] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).netloc == gateway_host:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    page = await browser.new_page()
    await page.route("**/*", offline)
    await page.goto(f"{GATEWAY}/docs")
    await page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert await page.locator(".swagger-ui .info .title").count() == 1
    assert elsewhere == []  # no CDN, no font, no validator badge: the page needs nothing outside the gateway


def _exporter():
    spec = importlib.util.spec_from_file_location("export_openapi", REPO_ROOT / "console" / "export_openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_committed_client_document_is_the_one_the_running_gateway_serves(gateway) -> None:
    """console/openapi.json (from which console/src/api/schema.d.ts is generated, and checked by
    tests/unit/gateway/test_console_api.py) is the merged document the gateway serves with every service up."""
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as anonymous:
        served = (await anonymous.get("/openapi.json")).json()
    assert "x-unavailable" not in served["info"]
    committed = (REPO_ROOT / "console" / "openapi.json").read_text(encoding="utf-8")
    assert _exporter().render(served) == committed, "the API changed: run `make console-api` and commit the result"
