"""The analyst's model history in a real browser against the real platform: rolling back to an earlier churn
model from the console and then switching churn models off (back to the rules), and the roles that may not
(the control is not theirs, and the API refuses them activation and deactivation)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser

from tests.console.conftest import CONSOLE, VIEWPORTS, screenshot, seed_churners, sign_in, train_churn_model
from tests.e2e.helpers import eventually
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


async def _churn_models(gateway: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await gateway.get("/api/v1/models", params={"kind": "churn", "limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _active_churn_model(gateway: httpx.AsyncClient) -> str | None:
    return next((m["id"] for m in await _churn_models(gateway) if m["active"]), None)


async def _back_to_the_rules(gateway: httpx.AsyncClient) -> None:
    """No churn model active (POST /models/churn/deactivate), and every customer rescored by the rules."""
    response = await gateway.post("/api/v1/models/churn/deactivate")
    assert response.status_code == 200, response.text
    await _rescored_by_the_rules(gateway, response.json()["id"])


async def _rescored_by_the_rules(gateway: httpx.AsyncClient, job_id: str) -> None:
    async def rescored() -> dict[str, Any] | None:
        body: dict[str, Any] = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
        return body if body["status"] in ("succeeded", "failed") else None

    assert (await eventually(rescored, timeout_s=120, what="the rescore by the rules"))["status"] == "succeeded"
    assert await _active_churn_model(gateway) is None


async def test_an_analyst_rolls_back_to_an_earlier_churn_model_from_the_history(
    gateway: httpx.AsyncClient, browser: Browser
):
    # Two versions: the earlier one, then a later one made active, as a retraining would.
    before = await _active_churn_model(gateway)
    await seed_churners(gateway)
    earlier = (await train_churn_model(gateway, activate=False))["result"]["model_id"]
    later = (await train_churn_model(gateway, activate=True))["result"]["model_id"]
    assert await _active_churn_model(gateway) == later
    try:
        context = await browser.new_context(viewport=VIEWPORTS["desktop"])
        page = await context.new_page()
        await sign_in(page, "analyst-rollback", "analyst", url=f"{CONSOLE}/analyst")
        history = page.locator("section[aria-labelledby=history-title]")
        later_row = history.locator(f"tr[data-model='{later}']")
        earlier_row = history.locator(f"tr[data-model='{earlier}']")
        await later_row.get_by_text("Active", exact=True).wait_for()
        await screenshot(page, "analyst-model-history")

        await earlier_row.get_by_role("button", name=f"Make active: {earlier}").click()
        await history.get_by_role("status").get_by_text(earlier).wait_for()
        await earlier_row.get_by_text("Active", exact=True).wait_for()
        assert await later_row.get_by_role("button", name=f"Make active: {later}").is_visible()
        # The quality figures at the top are the earlier model's now.
        metrics = next(m for m in await _churn_models(gateway) if m["id"] == earlier)["metrics"]["model"]
        shown_auc = float(await page.locator("[data-field=auc]").inner_text())
        assert shown_auc == pytest.approx(metrics["roc_auc"], abs=0.0005 + 1e-9)
        assert await _active_churn_model(gateway) == earlier
        await screenshot(page, "analyst-model-rolled-back")

        # Then no model at all: the rules score churn risk again, and every customer is rescored.
        await earlier_row.get_by_role("button", name=f"Switch off {earlier} and score churn risk by the rules").click()
        notice = history.locator("p[role=status][data-job]")
        await notice.wait_for()
        assert "rescored by the rules" in await notice.inner_text()
        await _rescored_by_the_rules(gateway, str(await notice.get_attribute("data-job")))
        assert await _active_churn_model(gateway) is None
        await earlier_row.get_by_role("button", name=f"Make active: {earlier}").wait_for()
        assert await history.get_by_text("Active", exact=True).count() == 0
        await page.get_by_text("No churn model is active: the rules score churn risk").wait_for()
        await screenshot(page, "analyst-model-rules-again")
        await context.close()
    finally:
        # Later tests, in whatever order they run, score with what was active before: that version again,
        # or on a fresh platform the rules (the versions this test trained stay in the history).
        if before is not None:
            assert (await gateway.post(f"/api/v1/models/{before}/activate")).status_code == 200
        elif await _active_churn_model(gateway) is not None:
            await _back_to_the_rules(gateway)


async def test_a_manager_has_no_model_history_control_and_the_api_refuses_their_rollback(
    gateway: httpx.AsyncClient, browser: Browser
):
    models = await _churn_models(gateway)
    target = models[-1]["id"] if models else f"churn-{uuid.uuid4().hex}"
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    await sign_in(page, "manager-models", "manager", team="team-models", url=f"{CONSOLE}/analyst")
    # The analyst page is not among the manager's: no link to it, and its address leads to their home page.
    await page.wait_for_function("() => !location.pathname.endsWith('/analyst')")
    await page.wait_for_selector("main#main h1")
    assert await page.locator("header.top nav").get_by_role("link", name="Model quality").count() == 0
    assert await page.get_by_role("button", name="Make active").count() == 0
    assert await page.get_by_role("heading", name="Model history").count() == 0
    await context.close()

    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as client:
        for role in ("manager", "agent"):
            headers = {"Authorization": f"Bearer {token(role, f'{role}-models')}"}
            for path in (f"/api/v1/models/{target}/activate", "/api/v1/models/churn/deactivate"):
                refused = await client.post(path, headers=headers)
                assert refused.status_code == 403, (role, path, refused.text)
                assert refused.headers["content-type"].startswith("application/problem+json")
    if models:  # nothing changed
        assert await _active_churn_model(gateway) == next((m["id"] for m in models if m["active"]), None)
