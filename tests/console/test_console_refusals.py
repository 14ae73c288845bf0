"""Refusals in a real browser (Debian's chromium) against the real platform (Kafka, PostgreSQL).

The rule editor, the API-key form and the webhook form each send a request the API really refuses (a rule
parameter out of range, a scope outside the key's role, a webhook to the cloud metadata address). The page
shows that refusal's problem+json in words (its detail and each field's message, as the API gives them for
the same request), and every field keeps what was typed; nothing was stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page

from tests.console.conftest import CONSOLE, VIEWPORTS, screenshot, sign_in

pytestmark = pytest.mark.e2e


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The API's own refusal of the request the page is about to send."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["detail"] and problem["errors"], problem
    return problem


async def _shows_in_words(section: Locator, problem: dict[str, Any]) -> str:
    """The section's alert holds the problem's detail and each offending field with its message."""
    alert = section.get_by_role("alert")
    await alert.wait_for()
    text = await alert.inner_text()
    assert problem["detail"] in text, (text, problem)
    for error in problem["errors"]:
        assert f"{error['field']}: {error['message']}" in text, (text, error)
    assert "HTTP 422" not in text  # words, not a bare status
    return text


async def _admin_page(browser: Browser, path: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, f"admin-{uuid.uuid4().hex[:6]}", "admin", url=f"{CONSOLE}{path}")
    return page, errors


async def test_a_refused_rule_preview_shows_the_problem_in_words_and_keeps_every_edit(
    gateway: httpx.AsyncClient, browser: Browser
):
    name = f"Refusal rule {uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "kind": "churn_risk_above",
        "severity": "medium",
        "enabled": False,
        "params": {"threshold": 0.9},
    }
    created = await gateway.post("/api/v1/rules", json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    renamed = f"{name} (tightened)"
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()}
    edited = {**body, "name": renamed, "severity": "high", "reason": rule["reason"], "params": {"threshold": 1.5}}
    problem = _problem(await gateway.post("/api/v1/rules/preview", json={**window, "rule": edited}))

    page, errors = await _admin_page(browser, "/rules")
    row = page.locator(f"tr[data-rule='{rule['id']}']")
    await page.locator("tr[data-rule]").first.wait_for()
    while not await row.count():  # paged on the server: walk to the rule's page
        await page.get_by_role("button", name="Next").click()
        await page.locator("tr[data-rule]").first.wait_for()
    await row.get_by_role("button", name=f"Edit {name}").click()
    editor = page.locator("section", has=page.get_by_role("heading", name=f"Edit rule: {name}"))
    await editor.get_by_label("Name").fill(renamed)
    await editor.get_by_label("Severity").select_option("high")
    await editor.get_by_label("Threshold").fill("1.5")
    await editor.get_by_role("button", name="Preview the last 30 days").click()

    text = await _shows_in_words(editor, problem)
    assert "threshold" in text
    assert await editor.get_by_label("Name").input_value() == renamed
    assert await editor.get_by_label("Severity").input_value() == "high"
    assert await editor.get_by_label("Threshold").input_value() == "1.5"
    assert await editor.get_by_role("button", name="Save").is_disabled()  # no preview, nothing to save
    await screenshot(page, "rules-refused")
    stored = (await gateway.get(f"/api/v1/rules/{rule['id']}")).json()
    assert (stored["name"], stored["severity"], stored["params"]["threshold"]) == (name, "medium", 0.9)
    assert not errors, errors
    await page.context.close()


async def test_a_key_with_a_scope_outside_its_role_is_refused_in_words_and_the_form_keeps_its_input(
    gateway: httpx.AsyncClient, browser: Browser
):
    name = f"erp-{uuid.uuid4().hex[:6]}"
    # An integration key may write interactions; it may never manage keys.
    scopes = "interactions:write, keys:admin"
    request = {"name": name, "role": "integration", "scopes": ["interactions:write", "keys:admin"]}
    problem = _problem(await gateway.post("/api/v1/keys", json=request))

    page, errors = await _admin_page(browser, "/admin")
    keys = page.locator("section", has=page.get_by_role("heading", name="API keys"))
    await keys.get_by_label("Name").fill(name)
    await keys.get_by_label("Role").select_option("integration")
    await keys.get_by_label("Scopes (comma-separated; empty: all)").fill(scopes)
    await keys.get_by_label("Expires").fill("2031-01-01T09:30")
    await keys.get_by_role("button", name="Create key").click()

    text = await _shows_in_words(keys, problem)
    assert "keys:admin" in text and "integration" in text
    assert await keys.get_by_label("Name").input_value() == name
    assert await keys.get_by_label("Role").input_value() == "integration"
    assert await keys.get_by_label("Scopes (comma-separated; empty: all)").input_value() == scopes
    assert await keys.get_by_label("Expires").input_value() == "2031-01-01T09:30"
    assert await keys.locator("[data-field=new-key]").count() == 0
    await screenshot(page, "admin-key-refused")
    listed = (await gateway.get("/api/v1/keys", params={"limit": 200, "include_revoked": True})).json()["items"]
    assert [k for k in listed if k["name"] == name] == []
    assert not errors, errors
    await page.context.close()


async def test_a_webhook_to_a_refused_address_is_refused_in_words_and_the_form_keeps_its_input(
    gateway: httpx.AsyncClient, browser: Browser
):
    # The cloud metadata address: link-local, never a webhook target (the test platform allows 127.0.0.0/8 only).
    url = f"http://169.254.169.254/latest/meta-data/{uuid.uuid4().hex[:6]}"
    secret = "a-long-enough-signing-secret"
    request = {"url": url, "secret": secret, "event_types": ["alert.raised"]}
    problem = _problem(await gateway.post("/api/v1/webhooks", json=request))

    page, errors = await _admin_page(browser, "/admin")
    hooks = page.locator("section", has=page.get_by_role("heading", name="Webhooks"))
    await hooks.get_by_label("URL").fill(url)
    await hooks.get_by_label("Signing secret (16 characters or more)").fill(secret)
    await hooks.get_by_label("Event types (comma-separated; empty: all)").fill("alert.raised")
    await hooks.get_by_role("button", name="Subscribe", exact=True).click()

    text = await _shows_in_words(hooks, problem)
    assert "url" in text and "public addresses only" in text
    assert await hooks.get_by_label("URL").input_value() == url
    assert await hooks.get_by_label("Signing secret (16 characters or more)").input_value() == secret
    assert await hooks.get_by_label("Event types (comma-separated; empty: all)").input_value() == "alert.raised"
    await screenshot(page, "admin-webhook-refused")
    listed = (await gateway.get("/api/v1/webhooks", params={"limit": 200})).json()["items"]
    assert [h for h in listed if h["url"] == url] == []
    assert not errors, errors
    await page.context.close()
