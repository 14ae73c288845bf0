"""A manager's team queue in a real browser against the real platform: the alerts of the team's customers and
no one else's, and a snooze from the queue (a refused one keeps what was typed and says why in words)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser

from tests.console.conftest import CONSOLE, VIEWPORTS, screenshot, sign_in
from tests.e2e.helpers import alerts_for, create_customer, eventually, post_complaint

pytestmark = pytest.mark.e2e


async def test_a_manager_sees_the_teams_alerts_only_and_snoozes_one_from_the_queue(
    gateway: httpx.AsyncClient, browser: Browser
):
    member, outsider = f"agent-{uuid.uuid4().hex[:8]}", f"agent-{uuid.uuid4().hex[:8]}"
    ours = await create_customer(gateway, owner=member, name="Team Customer Ltd")
    theirs = await create_customer(gateway, owner=outsider, name="Other Team Ltd")
    for customer in (ours, theirs):
        await post_complaint(gateway, customer["id"], severity="high")
    # A high-severity complaint may raise more than one alert (its own rule and a risk rule): take them all.
    our_alerts = await eventually(lambda: alerts_for(gateway, ours["id"]), what="the team customer's alerts")
    their_alerts = await eventually(lambda: alerts_for(gateway, theirs["id"]), what="the other customer's alerts")

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    await sign_in(page, f"manager-{uuid.uuid4().hex[:8]}", "manager", team=member, url=f"{CONSOLE}/queue")
    await page.locator(", ".join(f"li[data-alert='{a['id']}']" for a in our_alerts)).first.wait_for()
    our_alert_id = await page.locator(", ".join(f"li[data-alert='{a['id']}']" for a in our_alerts)).first.get_attribute(
        "data-alert"
    )
    row = page.locator(f"li[data-alert='{our_alert_id}']")
    for their_alert in their_alerts:
        assert await page.locator(f"li[data-alert='{their_alert['id']}']").count() == 0
    assert "Other Team Ltd" not in await page.locator("main").inner_text()

    # A time already past is refused: the detail in words, the typed reason kept.
    await row.get_by_role("button", name="Snooze").click()
    await row.get_by_label("Until").fill("2020-01-01T09:00")
    await row.get_by_label("Reason").fill("Customer on holiday")
    await row.get_by_role("button", name="Save").click()
    await row.locator(".error").wait_for()
    assert "future" in await row.locator(".error").inner_text()
    assert await row.get_by_label("Reason").input_value() == "Customer on holiday"

    tomorrow = (datetime.now() + timedelta(days=1)).replace(second=0, microsecond=0)
    await row.get_by_label("Until").fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    await screenshot(page, "manager-team-queue-snooze")
    await row.get_by_role("button", name="Save").click()
    await row.wait_for(state="detached")  # a snoozed alert leaves the open queue
    snoozed = (await gateway.get(f"/api/v1/alerts/{our_alert_id}")).json()
    assert snoozed["status"] == "snoozed"
    await context.close()
