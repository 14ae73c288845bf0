"""The Settings page in a real browser (Debian's chromium) against the real platform (Kafka, PostgreSQL).

An admin sees each run-time setting with the value in force, its default and its source; a refused value keeps
what was typed and shows the problem in words; a saved one is in force without a restart (the next complaint's
SLA clock follows it), is listed in the change log with who changed it, and a reset returns to the configured
value. Agents reach neither the page nor the API.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser

from tests.console.conftest import CONSOLE, VIEWPORTS, screenshot, sign_in
from tests.e2e.helpers import create_customer, eventually, post_complaint
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e

SLA = "/api/v1/settings/interaction/complaint_sla_hours"


async def test_an_admin_changes_a_setting_at_run_time_and_it_applies_without_a_restart(
    gateway: httpx.AsyncClient, browser: Browser
):
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await sign_in(page, admin, "admin", url=f"{CONSOLE}/settings")
        await page.get_by_role("heading", name="Run-time settings").wait_for()

        audience = page.locator("li[data-setting=campaign_max_audience]")
        await audience.wait_for()
        assert await audience.locator("[data-field=value]").inner_text() == "100000"
        assert await audience.locator("[data-field=default]").inner_text() == "100000"
        assert await audience.locator("[data-field=source]").inner_text() == "default"

        # A value outside the setting's bounds: refused with the problem in words, and the field keeps it.
        field = audience.get_by_label("New value")
        await field.fill("0")
        await audience.get_by_role("button", name="Save").click()
        refusal = audience.get_by_role("alert")
        await refusal.wait_for()
        assert "campaign_max_audience" in await refusal.inner_text()
        assert "greater than or equal to 1" in await refusal.inner_text()
        assert await field.input_value() == "0"
        assert await audience.locator("[data-field=source]").inner_text() == "default"

        # The complaint SLA per severity, changed here, applies to the next complaint without a restart.
        sla = page.locator("li[data-setting=complaint_sla_hours]")
        await sla.get_by_label("New value").fill('{"critical": 1, "high": 2, "medium": 3, "low": 4}')
        await sla.get_by_role("button", name="Save").click()
        await sla.get_by_role("status").wait_for()
        # The list is read again after the save: the source follows.
        await sla.locator("[data-field=source]", has_text="changed at run time").wait_for()
        assert admin in await sla.locator("[data-field=updated]").inner_text()
        log = page.locator("section[aria-labelledby=settings-interaction] tbody tr").first
        await log.wait_for()
        assert "complaint_sla_hours" in await log.inner_text() and admin in await log.inner_text()
        assert '"high":2' in await log.inner_text()
        await screenshot(page, "settings")

        customer = await create_customer(gateway, owner=f"agent-{uuid.uuid4().hex[:6]}")

        async def due_in_two_hours() -> bool:
            # Every API process of the interaction service reads the overrides again within seconds.
            complaint = await post_complaint(gateway, customer["id"], severity="high")
            due = datetime.fromisoformat(complaint["due_at"]) - datetime.fromisoformat(complaint["occurred_at"])
            return due == timedelta(hours=2)

        await eventually(due_in_two_hours, timeout_s=30, what="the new SLA to apply to a complaint")
        audit = (await gateway.get("/api/v1/settings/interaction/changes")).json()
        assert audit["items"][0]["name"] == "complaint_sla_hours"
        assert audit["items"][0]["old_value"] == {"critical": 4, "high": 24, "medium": 72, "low": 168}

        # Reset: the configured value is in force again.
        await sla.get_by_role("button", name="Reset").click()
        await page.wait_for_function(
            "() => document.querySelector('li[data-setting=complaint_sla_hours] [data-field=source]')"
            ".innerText === 'default'"
        )
        assert (await gateway.get("/api/v1/settings/interaction")).json()["items"][0]["source"] == "default"
        assert not errors, errors
    finally:
        await gateway.delete(SLA)
        await context.close()


async def test_an_agent_reaches_neither_the_settings_page_nor_its_api(gateway: httpx.AsyncClient, browser: Browser):
    agent = f"agent-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(
        base_url=GATEWAY, timeout=10, headers={"Authorization": f"Bearer {token('agent', agent)}"}
    ) as client:
        assert (await client.get("/api/v1/settings/retention")).status_code == 403
        assert (await client.put(SLA, json={"value": {"high": 1}})).status_code == 403
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    await sign_in(page, agent, "agent", url=f"{CONSOLE}/settings")
    await page.get_by_role("heading", name="Open alerts by value at risk").wait_for()
    assert await page.get_by_role("link", name="Settings").count() == 0
    assert "/console/settings" not in page.url
    await context.close()
