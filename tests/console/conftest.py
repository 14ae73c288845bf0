"""Browser fixtures: Playwright driving Debian's chromium (deploy/chromium.sh install), never a browser of
Playwright's own. The platform fixtures come from tests/platform.py like every e2e test's."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from servicekit.settings import REPO_ROOT
from tests.e2e.helpers import create_customer, eventually
from tests.platform import GATEWAY

CONSOLE = f"{GATEWAY}/console"
AXE = REPO_ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
# The tests write screenshots under .state so a test run leaves the tree clean; pointing
# CRM_CONSOLE_SCREENSHOTS at docs/console refreshes the ones the docs show.
SHOTS = Path(os.environ.get("CRM_CONSOLE_SCREENSHOTS") or REPO_ROOT / ".state" / "test" / "console-screenshots")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def chromium_path() -> str:
    found = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("Chromium is not installed: run `bash deploy/chromium.sh install` (make test does).")
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not (REPO_ROOT / "console" / "dist" / "index.html").exists() or not AXE.exists():
        pytest.fail("The console is not built: run `make console` (make test does).")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(page: Page, sub: str, role: str, *, team: str = "", url: str = CONSOLE + "/") -> None:
    """The development sign-in form, as a person fills it in."""
    await page.goto(url)
    await page.get_by_label("User").fill(sub)
    await page.get_by_label("Role").select_option(role)
    if team:
        await page.get_by_label("Team (comma-separated, managers)").fill(team)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("header.top nav")


async def axe_violations(page: Page) -> list[dict]:
    """Serious and critical axe-core findings on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


async def screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _score(gateway: httpx.AsyncClient, customer_id: str) -> dict[str, Any] | None:
    response = await gateway.get(f"/api/v1/customers/{customer_id}/scores")
    body = response.json() if response.status_code == 200 else None
    return body if body and body.get("scores") else None


async def seed_churners(gateway: httpx.AsyncClient, count: int = 5) -> None:
    """Customers who complained ten days ago and churned today, a churn model's churned class, and as many who
    bought then and stay active (with the platform's other customers, its active class), so a model trains
    on a fresh platform too."""
    segment = f"churners-{uuid.uuid4().hex[:8]}"
    earlier = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    churners = [await create_customer(gateway, segment=segment) for _ in range(count)]
    stayers = [await create_customer(gateway, segment=f"{segment}-stay") for _ in range(count)]
    for customer in churners:
        body = {"customer_id": customer["id"], "type": "complaint", "severity": "high", "occurred_at": earlier}
        assert (await gateway.post("/api/v1/interactions", json=body)).status_code == 201
    for customer in stayers:
        body = {"customer_id": customer["id"], "type": "purchase", "amount": "40.00", "currency": "EUR"}
        assert (await gateway.post("/api/v1/interactions", json={**body, "occurred_at": earlier})).status_code == 201
    for customer in stayers:
        await eventually(lambda c=customer: _score(gateway, c["id"]), what="the staying customer's score")
    for customer in churners:
        await eventually(lambda c=customer: _score(gateway, c["id"]), what="the churner's score")
        changed = await gateway.post(
            f"/api/v1/customers/{customer['id']}/status",
            json={"status": "churned", "reason": "competitor", "churned_at": datetime.now(UTC).date().isoformat()},
        )
        assert changed.status_code == 200, changed.text

    async def scoring_knows_they_churned() -> bool:
        params = {"segment": segment, "status": "churned"}
        return (await gateway.get("/api/v1/scores", params=params)).json()["total"] == len(churners)

    await eventually(scoring_knows_they_churned, what="scoring to hold the churned statuses it trains on")


async def train_churn_model(gateway: httpx.AsyncClient, *, activate: bool) -> dict[str, Any]:
    """A churn training job run to its end through the API; its finished job (result: model_id, metrics)."""
    started = await gateway.post("/api/v1/models/churn/train", json={"activate": activate, "folds": 2})
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]

    async def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = await eventually(finished, timeout_s=120, what="the churn training job")
    assert job["status"] == "succeeded", job
    return job
