"""The console's working pages in a real browser (Debian's chromium) against the real platform (Kafka, PostgreSQL).

Journeys: an agent works a complaint through its workflow on the complaint desk; a manager reads retention,
churn and save rates by month with precision/recall and uplift, the same figures the API gives; an admin edits
an alert rule after seeing its preview chart (a manager sees the rules but cannot edit them); an analyst sees
the value model's fit; an admin creates and revokes an API key and subscribes a webhook. A failed request
shows the problem's detail and keeps what was typed. Screenshots go to docs/console/ (CRM_CONSOLE_SCREENSHOTS).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.console.conftest import CONSOLE, VIEWPORTS, screenshot, sign_in
from tests.e2e.helpers import create_customer, eventually, post_complaint
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


def _errors(page: Page) -> list[str]:
    seen: list[str] = []
    page.on(
        "console",
        lambda m: seen.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    page.on("pageerror", lambda exc: seen.append(str(exc)))
    return seen


async def test_an_agent_works_a_complaint_through_the_workflow_on_the_complaint_desk(
    gateway: httpx.AsyncClient, browser: Browser
):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=agent, name="Quayside Foods")
    complaint = await post_complaint(gateway, customer["id"], severity="high")
    theirs = await create_customer(gateway, owner=f"other-{uuid.uuid4().hex[:8]}")
    await post_complaint(gateway, theirs["id"])

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    # From the customer 360 page's link, as an agent would arrive.
    await sign_in(page, agent, "agent", url=f"{CONSOLE}/customers/{customer['id']}")
    await page.get_by_role("heading", name="Quayside Foods").wait_for()
    await page.get_by_role("link", name="Complaint desk").last.click()
    await page.get_by_role("heading", name="Open complaints by SLA due time").wait_for()
    row = page.locator(f"li[data-complaint='{complaint['id']}']")
    await row.wait_for()
    assert "The order arrived two weeks late." in await row.inner_text()
    assert (await row.locator("[data-field=sla]").inner_text()).startswith("SLA: ")
    assert await row.get_attribute("data-status") == "open"
    await screenshot(page, "complaint-desk")

    async def step(to: str, note: str) -> None:
        current = page.locator(f"li[data-complaint='{complaint['id']}']")
        await current.get_by_label("Next step").select_option(to)
        await current.get_by_label("Note").fill(note)
        await current.get_by_role("button", name="Save").click()
        await page.locator(f"li[data-complaint='{complaint['id']}'][data-status='{to}']").wait_for()

    await step("acknowledged", "Called back")
    await step("valid", "The delivery was late")

    # Resolving without the resolution: the service's 422 in words, and the note stays as typed.
    await row.get_by_label("Next step").select_option("resolved")
    await row.get_by_label("Note").fill("Credit note sent")
    await row.get_by_role("button", name="Save").click()
    await row.locator(".error").wait_for()
    assert "resolution" in await row.locator(".error").inner_text()
    assert await row.get_by_label("Note").input_value() == "Credit note sent"
    await row.get_by_label("Resolution").fill("A credit of 10% on the order")
    await row.get_by_role("button", name="Save").click()
    await page.locator(f"li[data-complaint='{complaint['id']}'][data-status='resolved']").wait_for()

    stored = (await gateway.get(f"/api/v1/complaints/{complaint['id']}")).json()
    assert stored["complaint_status"] == "resolved"
    assert stored["resolution"] == "A credit of 10% on the order"
    assert [s["status"] for s in stored["steps"]][-3:] == ["acknowledged", "valid", "resolved"]

    # Another owner's customer: the gateway's 404, in words; nothing of theirs is shown.
    await page.get_by_label("Customer").fill(theirs["id"])
    await page.get_by_role("button", name="Apply").click()
    await page.locator("main > .error").wait_for()
    assert "The order arrived" not in await page.locator("main").inner_text()
    assert not errors, errors
    await context.close()


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines if ":" in line)]


def _percent(value: float | None) -> str:
    """As the console writes a rate in English (at most one decimal)."""
    return "\u2013" if value is None else f"{round(value * 100, 1):g}%"


async def test_a_manager_reads_rates_by_month_with_precision_recall_and_uplift_as_the_api_gives_them(
    gateway: httpx.AsyncClient, browser: Browser
):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=agent)
    await post_complaint(gateway, customer["id"], severity="high")
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    await sign_in(page, "manager-1", "manager", team=agent, url=f"{CONSOLE}/retention")
    await page.get_by_role("heading", name="Retention, churn and save rates").wait_for()
    rows = page.locator("tr[data-month]")
    await rows.first.wait_for()
    assert await rows.count() == 6
    # A finished month's figures are fixed: the page shows what the API answers for that month.
    now = datetime.now(UTC)
    first = date(now.year, now.month, 1)
    previous = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    window = {"from": f"{previous.isoformat()}T00:00:00Z", "to": f"{first.isoformat()}T00:00:00Z"}
    metrics = (await gateway.get("/api/v1/retention/metrics", params=window)).json()["overall"]
    shown = page.locator(f"tr[data-month='{previous.isoformat()[:7]}']")
    assert await shown.locator("[data-field=customers]").inner_text() == f"{metrics['customers']:,}"
    for field, key in (("churn", "churn_rate"), ("precision", "precision"), ("uplift", "uplift")):
        assert await shown.locator(f"[data-field={field}]").inner_text() == _percent(metrics[key])
    assert await page.get_by_role("img", name="Rates by month").count() == 1
    assert await page.get_by_role("img", name="Alert precision and recall").count() == 1
    await screenshot(page, "manager-retention")

    await page.get_by_role("button", name="切换到中文").click()
    await page.get_by_role("heading", name="客户保持率、流失率与挽回率").wait_for()
    text = await page.locator("main").inner_text()
    assert "精确率" in text and "对照组流失率" in text
    await screenshot(page, "manager-retention-zh")
    assert not errors, errors
    await context.close()


async def test_an_admin_edits_a_rule_after_its_preview_chart_and_a_manager_only_reads_rules(
    gateway: httpx.AsyncClient, browser: Browser
):
    name = f"Console rule {uuid.uuid4().hex[:6]}"
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
    # Customers whose risk rose after a complaint: what the edited rule would have caught.
    for _ in range(3):
        customer = await create_customer(gateway, owner="agent-1")
        await post_complaint(gateway, customer["id"], severity="high")
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(days=30)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    edited = {**body, "params": {"threshold": 0.1}}

    async def caught() -> int:
        answer = await gateway.post("/api/v1/rules/preview", json={**window, "rule": edited})
        return answer.json()["alerts"] if answer.json()["alerts"] >= 3 else 0

    await eventually(caught, what="the complaints' risk scores to reach the retention service")

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    await sign_in(page, "admin-1", "admin", url=f"{CONSOLE}/rules")
    row = page.locator(f"tr[data-rule='{rule['id']}']")
    while not await row.count():  # paged on the server: walk to the rule's page
        await page.locator("tr[data-rule]").first.wait_for()
        if await row.count():
            break
        await page.get_by_role("button", name="Next").click()
    await row.get_by_role("button", name=f"Edit {name}").click()
    editor = page.locator("section", has=page.get_by_role("heading", name=f"Edit rule: {name}"))
    save = editor.get_by_role("button", name="Save")
    assert await save.is_disabled()  # nothing is saved before its preview was seen

    # An out-of-range threshold: the service's problem in words, the typed value kept.
    await editor.get_by_label("Threshold").fill("1.5")
    await editor.get_by_role("button", name="Preview the last 30 days").click()
    await editor.locator(".error").wait_for()
    assert "threshold" in await editor.locator(".error").inner_text()
    assert await editor.get_by_label("Threshold").input_value() == "1.5"

    await editor.get_by_label("Threshold").fill("0.1")
    await editor.get_by_role("button", name="Preview the last 30 days").click()
    await editor.locator("[data-preview=done]").wait_for()
    summary = await editor.locator("[data-preview=done] p").inner_text()
    assert "would have raised" in summary and " raised 0 alerts" not in summary
    await editor.get_by_role("img", name="Alerts the rule would have raised per day", exact=False).wait_for()
    await screenshot(page, "rules-preview")
    await save.click()
    await editor.wait_for(state="detached")
    stored = (await gateway.get(f"/api/v1/rules/{rule['id']}")).json()
    assert stored["params"]["threshold"] == 0.1
    assert stored["enabled"] is False
    assert not errors, errors

    manager = await context.new_page()
    await sign_in(manager, "manager-1", "manager", url=f"{CONSOLE}/rules")
    await manager.locator("tr[data-rule]").first.wait_for()
    assert await manager.get_by_role("button", name="Edit", exact=False).count() == 0
    await context.close()


async def _finished(gateway: httpx.AsyncClient, job_id: str) -> dict | None:
    job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
    return job if job["status"] in ("succeeded", "failed") else None


async def test_an_analyst_sees_the_value_models_parameters_and_predicted_against_actual(
    gateway: httpx.AsyncClient, browser: Browser
):
    segment = f"value-fit-{uuid.uuid4().hex[:8]}"
    today = datetime.now(UTC).date()
    rows = []
    for n in range(40):
        customer = await create_customer(gateway, segment=segment)
        for k in range(1 + n % 6):  # one to six purchases, spread over the last 300 days
            day = today - timedelta(days=300 - (n * 7 + k * 45) % 290)
            rows.append(
                {
                    "customer_id": customer["id"],
                    "type": "purchase",
                    "amount": str(20 + n % 9 * 10),
                    "currency": "EUR",
                    "occurred_at": f"{day.isoformat()}T12:00:00Z",
                    "external_id": f"{segment}-{n}-{k}",
                }
            )
    loaded = await gateway.post("/api/v1/interactions/bulk", json={"rows": rows})
    assert loaded.status_code == 200, loaded.text

    async def purchases_held() -> bool:
        body = (await gateway.get("/api/v1/models/value/purchases", params={"segment": segment})).json()
        return body["purchases"] >= len(rows)

    await eventually(purchases_held, timeout_s=60, what="scoring to hold the purchases")
    calibration_end = (today - timedelta(days=90)).isoformat()
    started = await gateway.post(
        "/api/v1/models/value/refit", json={"calibration_end": calibration_end, "segment": segment, "rescore": False}
    )
    assert started.status_code == 202, started.text
    job = await eventually(lambda: _finished(gateway, started.json()["id"]), timeout_s=180, what="the refit job")
    assert job["status"] == "succeeded", job
    models = (await gateway.get("/api/v1/models", params={"kind": "value", "limit": 20})).json()["items"]
    model = next((m for m in models if m["active"]), models[0])

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    await sign_in(page, "analyst-1", "analyst", url=f"{CONSOLE}/analyst")
    await page.get_by_role("heading", name="Value model fit (BG/NBD and Gamma-Gamma)").wait_for()
    shown_r = page.locator("[data-param='bgnbd.r']")
    await shown_r.wait_for()
    assert float((await shown_r.inner_text()).replace(",", "")) == pytest.approx(
        model["params"]["bgnbd"]["r"], abs=0.00005 + 1e-9
    )
    shown_p = float((await page.locator("[data-param='gamma_gamma.p']").inner_text()).replace(",", ""))
    assert shown_p == pytest.approx(model["params"]["gamma_gamma"]["p"], abs=0.00005 + 1e-9)
    backtest = model["metrics"].get("backtest")
    if backtest:
        await page.get_by_role("img", name="Predicted against actual purchases", exact=False).wait_for()
        assert f"{backtest['actual']:,.0f} made" in await page.locator("[data-field=backtest-total]").inner_text()
    await screenshot(page, "analyst-value-fit")
    await context.close()


async def test_an_admin_creates_and_revokes_an_api_key_and_subscribes_a_webhook(
    gateway: httpx.AsyncClient, browser: Browser
):
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    await sign_in(page, "admin-1", "admin", url=f"{CONSOLE}/admin")
    await page.get_by_role("heading", name="Administration").wait_for()
    keys = page.locator("section", has=page.get_by_role("heading", name="API keys"))

    # No name: the gateway's 422 in words; the chosen role stays.
    await keys.get_by_label("Role").select_option("importer")
    await keys.get_by_role("button", name="Create key").click()
    await keys.locator(".error").wait_for()
    assert "name" in await keys.locator(".error").inner_text()
    assert await keys.get_by_label("Role").input_value() == "importer"

    name = f"erp-{uuid.uuid4().hex[:6]}"
    await keys.get_by_label("Name").fill(name)
    await keys.get_by_role("button", name="Create key").click()
    secret = await keys.locator("[data-field=new-key] code").inner_text()
    listed = (await gateway.get("/api/v1/keys", params={"limit": 200})).json()["items"]
    [key] = [k for k in listed if k["name"] == name]
    assert key["role"] == "importer"
    probe = await gateway.get("/api/v1/keys", headers={"X-API-Key": secret, "Authorization": ""})
    assert probe.status_code == 403  # a working key, of a role that may not manage keys
    await keys.get_by_role("button", name=f"Revoke {name}").click()
    await keys.locator(f"tr[data-key='{key['id']}']", has_text="revoked").wait_for()
    assert (await gateway.get(f"/api/v1/keys/{key['id']}")).json()["revoked_at"] is not None

    # A receiver on this machine (the test platform allows 127.0.0.0/8 as a webhook target); it keeps each
    # request, since alerts other tests raise meanwhile are delivered to it too.
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(v) for k, v in _headers(head) if k == "content-length"), 0)
        received.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    hooks = page.locator("section", has=page.get_by_role("heading", name="Webhooks"))
    await hooks.get_by_label("URL").fill(url)
    await hooks.get_by_label("Event types (comma-separated; empty: all)").fill("alert.raised")
    await hooks.get_by_label("Signing secret (16 characters or more)").fill("short")
    await hooks.get_by_role("button", name="Subscribe", exact=True).click()
    await hooks.locator(".error").wait_for()
    assert "secret" in await hooks.locator(".error").inner_text()
    assert await hooks.get_by_label("URL").input_value() == url
    await hooks.get_by_label("Signing secret (16 characters or more)").fill("a-long-enough-signing-secret")
    await hooks.get_by_role("button", name="Subscribe", exact=True).click()
    item = hooks.locator("li[data-webhook]", has_text=url)
    await item.wait_for()
    webhook_id = await item.get_attribute("data-webhook")

    # An alert raised after subscribing is delivered, and the log shows it.
    customer = await create_customer(gateway, owner="agent-1")
    await post_complaint(gateway, customer["id"], severity="high")

    async def delivered() -> list[dict]:
        log = (await gateway.get(f"/api/v1/webhooks/{webhook_id}/deliveries")).json()["items"]
        ours = [r for r in received if customer["id"].encode() in r]  # the event id is in a header
        return [d for d in log if d["status"] == "delivered" and any(d["event_id"].encode() in r for r in ours)]

    try:
        [delivery] = await eventually(delivered, what="the webhook delivery")
        await item.get_by_role("button", name="Delivery log").click()
        row = item.locator(f"tr[data-delivery='{delivery['id']}']")
        await row.wait_for()
        text = await row.inner_text()
        assert "alert.raised" in text and "delivered" in text and "204" in text
    finally:
        server.close()
    await screenshot(page, "admin")
    assert not errors, errors
    await context.close()


async def test_an_agents_complaint_desk_lists_the_complaints_of_every_customer_they_own(
    gateway: httpx.AsyncClient, browser: Browser
):
    agent, other = f"agent-{uuid.uuid4().hex[:8]}", f"agent-{uuid.uuid4().hex[:8]}"
    first = await create_customer(gateway, owner=agent, name="Harbour Mills")
    second = await create_customer(gateway, owner=agent, name="Lantern Bakery")
    theirs = await create_customer(gateway, owner=other, name="Elsewhere Ltd")
    kept = (await post_complaint(gateway, first["id"], severity="high"))["id"]
    moving = (await post_complaint(gateway, second["id"], severity="high"))["id"]
    mine = {kept, moving}
    not_mine = (await post_complaint(gateway, theirs["id"]))["id"]

    async def listed(owner: str) -> set[str]:
        page = (await gateway.get("/api/v1/complaints", params={"owner": owner, "limit": 200})).json()
        return {item["id"] for item in page["items"]}

    # The interaction service learns each customer's owner from the customer events.
    await eventually(lambda: _equals(listed(agent), mine), what="the owners in interaction's replica")

    # As the agent, through the gateway: no customer named, only their customers' complaints, each naming them.
    headers = {"Authorization": f"Bearer {token('agent', agent)}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, headers=headers) as client:
        page = (await client.get("/api/v1/complaints")).json()
        assert {item["id"] for item in page["items"]} == mine and page["total"] == 2
        assert {item["owner"] for item in page["items"]} == {agent}
        assert (await client.get("/api/v1/complaints", params={"owner": other})).status_code == 403

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    await sign_in(page, agent, "agent", url=f"{CONSOLE}/complaints")
    await page.get_by_role("heading", name="Open complaints by SLA due time").wait_for()
    for complaint_id in mine:
        await page.locator(f"li[data-complaint='{complaint_id}']").wait_for()
    assert await page.locator(f"li[data-complaint='{not_mine}']").count() == 0
    assert agent in await page.locator(f"li[data-complaint='{next(iter(mine))}'] [data-field=owner]").inner_text()
    await screenshot(page, "complaint-desk-owner")

    # Reassigned to another agent: the customer's complaints leave this agent's desk.
    moved = await gateway.patch(
        f"/api/v1/customers/{second['id']}", json={"owner": other, "version": second["version"]}
    )
    assert moved.status_code == 200, moved.text
    await eventually(lambda: _equals(listed(agent), {kept}), what="the reassignment")
    await sign_in(page, agent, "agent", url=f"{CONSOLE}/complaints")  # a reload signs out (token in memory)
    await page.locator("ul.queue li").first.wait_for()
    await page.locator(f"li[data-complaint='{kept}']").wait_for()
    assert await page.locator("ul.queue li").count() == 1
    assert not errors, errors
    await context.close()


async def _equals(found: Awaitable[set[str]], wanted: set[str]) -> bool:
    return await found == wanted
