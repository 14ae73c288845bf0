"""The retention console in a real browser (Debian's chromium) against the real platform (Kafka, PostgreSQL).

Journeys: an agent works an alert that appears live, reads the customer 360 page; an agent cannot open
another owner's customer; a manager sees the pyramid of a seeded set; Chinese labels; axe-core finds no
serious or critical violation on any page at 1280x800 and 390x844. Screenshots go to docs/console/.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Request, Route

from tests.console.conftest import (
    CONSOLE,
    VIEWPORTS,
    axe_violations,
    screenshot,
    seed_churners,
    sign_in,
    train_churn_model,
)
from tests.e2e.helpers import alerts_for, create_customer, eventually, post_complaint
from tests.platform import token

pytestmark = pytest.mark.e2e


def _errors(page: Page) -> list[str]:
    """Script errors and Content-Security-Policy refusals, collected while the page lives (a failed request
    the test provokes on purpose is not one)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: seen.append(str(exc)))
    return seen


JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.")


def _bearer_tokens(page: Page) -> set[str]:
    """The bearer tokens the page sends to the API, collected while it lives."""
    seen: set[str] = set()

    def keep(request: Request) -> None:
        value = request.headers.get("authorization", "")
        if value.startswith("Bearer "):
            seen.add(value.removeprefix("Bearer "))

    page.on("request", keep)
    return seen


async def _open_tasks(gateway: httpx.AsyncClient, alert_id: str) -> list[dict] | None:
    response = await gateway.get("/api/v1/tasks", params={"alert_id": alert_id, "status": "open"})
    return response.json()["items"] or None


async def _score(gateway: httpx.AsyncClient, customer_id: str) -> dict | None:
    response = await gateway.get(f"/api/v1/customers/{customer_id}/scores")
    body = response.json() if response.status_code == 200 else None
    return body if body and body.get("scores") else None


async def test_an_agent_sees_a_complaint_become_an_alert_live_acknowledges_it_and_reads_the_360_page(
    gateway: httpx.AsyncClient, browser: Browser
):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=agent, name="Harbour Logistics")
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)
    bearers = _bearer_tokens(page)
    await sign_in(page, agent, "agent")
    await page.wait_for_url(f"{CONSOLE}/queue")
    await page.wait_for_selector("[data-stream=live]")
    # The development sign-in's token lives in memory only: none in storage an XSS could read.
    assert bearers, "the queue's requests carry the signed-in agent's token"
    storage = await page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert not [t for t in bearers if t in storage] and not JWT.search(storage), storage
    await page.evaluate("() => { window.__sameDocument = true; }")

    await post_complaint(gateway, customer["id"], severity="high")
    [alert] = await eventually(lambda: alerts_for(gateway, customer["id"]), what="the churn alert")
    # The queue shows it from the event stream, without a reload: a functional wait, not a timing check.
    row = page.locator(f"li[data-alert='{alert['id']}']")
    await row.wait_for(timeout=2000)
    assert await page.evaluate("() => window.__sameDocument === true")
    assert "severe_complaint" in await row.inner_text()
    await screenshot(page, "agent-queue")

    await row.get_by_role("button", name="Acknowledge").click()
    await row.locator(".status", has_text="acknowledged").wait_for()
    acknowledged = (await gateway.get(f"/api/v1/alerts/{alert['id']}")).json()
    assert acknowledged["status"] == "acknowledged"

    # The playbook's first task for the alert, completed from the queue with a note.
    tasks = await eventually(lambda: _open_tasks(gateway, alert["id"]), what="the playbook's tasks for the alert")
    task_row = page.locator(f"tr[data-task='{tasks[0]['id']}']")
    await task_row.wait_for()
    await task_row.get_by_role("textbox").fill("Called the customer")
    await task_row.get_by_role("button", name="Complete").click()
    await task_row.wait_for(state="detached")
    task = (await gateway.get(f"/api/v1/tasks/{tasks[0]['id']}")).json()
    assert (task["status"], task["note"]) == ("completed", "Called the customer")

    # A failed resolve keeps what was typed and shows the problem's detail in words.
    await row.get_by_role("button", name="Resolve").click()
    await row.get_by_label("Note").fill("x" * 2001)
    await row.get_by_label("Note").evaluate("el => el.removeAttribute('maxlength')")
    await row.get_by_label("Note").fill("y" * 2001)
    await row.get_by_role("button", name="Save").click()
    await row.locator(".error").wait_for()
    assert await row.get_by_label("Note").input_value() == "y" * 2001
    await row.get_by_label("Note").fill("Called, offered a credit")
    await row.get_by_role("button", name="Save").click()
    await row.wait_for(state="detached")
    resolved = (await gateway.get(f"/api/v1/alerts/{alert['id']}")).json()
    assert (resolved["status"], resolved["outcome"]) == ("resolved", "saved")

    await eventually(lambda: _score(gateway, customer["id"]), what="the customer's score")
    await page.goto(f"{CONSOLE}/customers/{customer['id']}")  # a reload signs out: the token lives in memory
    await sign_in(page, agent, "agent", url=f"{CONSOLE}/customers/{customer['id']}")
    await page.get_by_role("heading", name="Harbour Logistics").wait_for()
    complaint = page.locator("ol.timeline li[data-type=complaint]")
    await complaint.first.wait_for()
    assert "The order arrived two weeks late." in await complaint.first.inner_text()
    risk = await page.locator("[data-field=churn-risk]").inner_text()
    assert risk.endswith("%")
    # Churn risk and health with their factors in words: each sentence the scoring service gives is on
    # the page, and they are sentences, not bare figures.
    scores = (await gateway.get(f"/api/v1/customers/{customer['id']}/scores")).json()["scores"]
    assert scores["factors"]["churn_risk"], scores["factors"]  # a complaint is one
    lists = page.locator("section[aria-labelledby=risk-title] ul.factors")
    given = [f for f in (scores["factors"]["churn_risk"], scores["factors"]["health"]) if f]
    assert await lists.count() == len(given)
    for shown, factors in enumerate(given):
        # Each line: the sentence, then its contribution in brackets.
        texts = await lists.nth(shown).locator("li").all_inner_texts()
        assert [text.rsplit(" (", 1)[0] for text in texts] == [f["label"] for f in factors]
        assert all(re.search(r"[a-z]{3,} [a-z]{2,}", f["label"]) for f in factors), factors
    if scores["model_version"].startswith("rules"):  # the complaint, in the rules' own words
        section = await page.locator("section[aria-labelledby=risk-title]").inner_text()
        assert "1 severe complaint (high or critical) in 90 days" in section
    await page.locator("canvas").first.wait_for()
    await screenshot(page, "customer-360")
    assert not errors, errors
    await context.close()


async def test_an_agent_cannot_open_another_owners_customer_by_typing_its_url(
    gateway: httpx.AsyncClient, browser: Browser
):
    theirs = await create_customer(gateway, owner=f"other-{uuid.uuid4().hex[:8]}", name="Not Yours Ltd")
    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    url = f"{CONSOLE}/customers/{theirs['id']}"
    await sign_in(page, f"agent-{uuid.uuid4().hex[:8]}", "agent", url=url)
    await page.get_by_role("heading", name="Not found").wait_for()
    assert "Not Yours Ltd" not in await page.content()
    assert await page.locator("[role=alert]").inner_text()  # the problem's detail, in words
    await context.close()


async def test_a_manager_sees_the_pyramid_and_risk_counts_of_a_seeded_set_and_chinese_labels(
    gateway: httpx.AsyncClient, browser: Browser
):
    segment = f"console-{uuid.uuid4().hex[:8]}"
    customers = [await create_customer(gateway, segment=segment, owner="agent-1") for _ in range(4)]
    for customer in customers[:2]:
        await post_complaint(gateway, customer["id"], severity="high")
    for customer in customers[2:]:  # a customer is scored on their first interaction
        body = {"customer_id": customer["id"], "type": "purchase", "amount": "120", "currency": "EUR"}
        assert (await gateway.post("/api/v1/interactions", json=body)).status_code == 201

    async def all_scored() -> list[dict] | None:
        body = (await gateway.get("/api/v1/scores", params={"segment": segment, "limit": 50})).json()
        complained = {c["id"] for c in customers[:2]}
        risky = [i for i in body["items"] if i["customer_id"] in complained and i["churn_risk"] > 0.1]
        return body["items"] if body["total"] == len(customers) and len(risky) == 2 else None

    await eventually(all_scored, what="every seeded customer scored")

    def expected(items: list[dict]) -> tuple[dict[str, int], list[int], dict[str, int]]:
        tiers: dict[str, int] = {}
        risk = [0] * 10
        stages: dict[str, int] = {}
        for item in items:
            key = item["value_tier"] or "none"
            tiers[key] = tiers.get(key, 0) + 1
            risk[min(int(item["churn_risk"] * 10), 9)] += 1
            stage = item["lifecycle_stage"] or "none"
            stages[stage] = stages.get(stage, 0) + 1
        return tiers, risk, stages

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    errors = _errors(page)

    async def page_shows_the_api() -> bool:
        # Every customer is scored from its creation, so a purchase may still be rescoring while the page
        # loads: compare the page with the API read just before it, opening it afresh until both agree.
        ranked = await all_scored()
        if ranked is None:
            return False
        tiers, risk, stages = expected(ranked)
        await sign_in(page, "manager-1", "manager", team="agent-1", url=f"{CONSOLE}/manager?segment={segment}")
        await page.locator("[data-field=total]", has_text="4").wait_for()
        for tier, count in tiers.items():
            if await page.locator(f"tr[data-tier='{tier}'] [data-field=customers]").inner_text() != str(count):
                return False
        shown = [await page.locator("li[data-risk]").nth(i).inner_text() for i in range(10)]
        if [int(text.rsplit(":", 1)[1]) for text in shown] != risk:
            return False
        # The lifecycle stage funnel: each stage's count beside the chart, as the API gives them.
        for stage, count in stages.items():
            text = await page.locator(f"li[data-stage='{stage}']").inner_text()
            if int(text.rsplit(":", 1)[1]) != count:
                return False
        return True

    await eventually(page_shows_the_api, what="the pyramid, risk and stage counts the API reports")
    await screenshot(page, "manager-pyramid")

    await page.get_by_role("button", name="切换到中文").click()
    await page.get_by_role("heading", name="客户金字塔").first.wait_for()
    text = await page.locator("main").inner_text()
    assert "流失风险分布" in text and "考察期" in text and "客户生命周期" in text
    assert await page.evaluate("() => document.documentElement.lang") == "zh-CN"
    await screenshot(page, "manager-pyramid-zh")
    assert not errors, errors
    await context.close()


PAGES = {
    "sign-in": ("agent", None),
    "queue": ("agent", "/queue"),
    "customer": ("agent", "/customers/{customer}"),
    "manager": ("manager", "/manager"),
    "analyst": ("analyst", "/analyst"),
    "complaints": ("agent", "/complaints"),
    "retention": ("manager", "/retention"),
    "rules": ("manager", "/rules"),
    "admin": ("admin", "/admin"),
    "settings": ("admin", "/settings"),
}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_every_page_has_no_serious_accessibility_violation(
    gateway: httpx.AsyncClient, browser: Browser, viewport: str
):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=agent, name="Axe Check GmbH")
    await post_complaint(gateway, customer["id"], severity="high")
    await eventually(lambda: alerts_for(gateway, customer["id"]), what="the churn alert")
    # axe-core is injected as a script tag, which the console's CSP would refuse: this context only.
    context = await browser.new_context(viewport=VIEWPORTS[viewport], bypass_csp=True)
    page = await context.new_page()
    found: dict[str, list[dict]] = {}
    for name, (role, path) in PAGES.items():
        if path is None:
            await page.goto(f"{CONSOLE}/")
            await page.get_by_label("User").wait_for()
        else:
            url = CONSOLE + path.format(customer=customer["id"])
            await sign_in(page, agent if role == "agent" else f"{role}-1", role, url=url)
            await page.locator("main h1").first.wait_for()
            # The queue keeps its event stream open, so "network idle" never comes: wait for the data.
            await page.wait_for_function("() => !document.querySelector('main').innerText.includes('Loading')")
        found[name] = await axe_violations(page)
        await screenshot(page, f"{name}-{viewport}")
    assert found == {name: [] for name in PAGES}
    await context.close()


async def test_an_analyst_sees_the_churn_models_auc_brier_and_calibration_plot(
    gateway: httpx.AsyncClient, browser: Browser
):
    # Trained but not activated, so no other test's scores change.
    await seed_churners(gateway)
    job = await train_churn_model(gateway, activate=False)
    trained = job["result"]["metrics"]["model"]
    # The figures at the top are the active model's, or the newest one's when none is active (this one then).
    models = (await gateway.get("/api/v1/models", params={"kind": "churn", "limit": 100})).json()["items"]
    metrics = next((m for m in models if m["active"]), models[0])["metrics"]["model"]

    context = await browser.new_context(viewport=VIEWPORTS["desktop"])
    page = await context.new_page()
    await sign_in(page, "analyst-1", "analyst", url=f"{CONSOLE}/analyst")
    await page.locator("[data-field=auc]").wait_for()
    shown_auc = float(await page.locator("[data-field=auc]").inner_text())
    # Shown to three decimals: half a unit of the last place, plus float noise at an exact half.
    shown_to_3 = 0.0005 + 1e-9
    assert shown_auc == pytest.approx(metrics["roc_auc"], abs=shown_to_3)
    shown_brier = float(await page.locator("[data-field=brier]").inner_text())
    assert shown_brier == pytest.approx(metrics["brier"], abs=shown_to_3)
    # The trained model's own row in the history: version, fitted, algorithm, AUC, Brier.
    cells = page.locator(f"tr[data-model='{job['result']['model_id']}'] td")
    assert float(await cells.nth(3).inner_text()) == pytest.approx(trained["roc_auc"], abs=shown_to_3)
    assert float(await cells.nth(4).inner_text()) == pytest.approx(trained["brier"], abs=shown_to_3)
    plot = page.get_by_role("img", name=re.compile("^Calibration curve"))
    await plot.wait_for()
    assert (await plot.bounding_box() or {}).get("height", 0) > 100
    # The ROC curve is the model's own (its points are kept with its metrics).
    assert trained["roc"][0] == {"fpr": 0.0, "tpr": 0.0} and trained["roc"][-1] == {"fpr": 1.0, "tpr": 1.0}
    roc = page.get_by_role("img", name=re.compile(r"^ROC curve: AUC "))
    await roc.wait_for()
    assert (await roc.get_attribute("aria-label")).endswith(f"{metrics['roc_auc']:.3f}")
    await screenshot(page, "analyst-calibration")
    await context.close()


async def test_organisation_sign_in_uses_the_authorization_code_flow_with_pkce(
    gateway: httpx.AsyncClient, browser: Browser
):
    """The identity provider is played by the test (Playwright answers its three addresses); the token it
    issues is one the platform's gateway accepts, so the console then works with it as with any other."""
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=agent, name="Single Sign-On SA")
    issuer = "https://idp.test"
    seen: dict[str, str] = {}
    # The real gateway is not configured with this provider, so its CSP would (rightly) refuse to connect
    # to it; with a configured issuer the gateway adds it to connect-src (tests/unit/gateway/test_console.py).
    context = await browser.new_context(viewport=VIEWPORTS["desktop"], bypass_csp=True)
    page = await context.new_page()
    cors = {"access-control-allow-origin": "*"}

    async def config(route: Route) -> None:
        oidc = {"issuer": issuer, "client_id": "retention-console", "scope": "openid"}
        await route.fulfill(json={"dev_sign_in": False, "roles": ["agent"], "oidc": oidc})

    async def provider(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.path == "/.well-known/openid-configuration":
            endpoints = {"authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token"}
            await route.fulfill(json=endpoints, headers=cors)
        elif url.path == "/authorize":
            query = dict(parse_qsl(url.query))
            assert (query["response_type"], query["code_challenge_method"]) == ("code", "S256")
            seen.update(challenge=query["code_challenge"], redirect=query["redirect_uri"])
            back = f"{query['redirect_uri']}?{urlencode({'code': 'code-1', 'state': query['state']})}"
            await route.fulfill(status=302, headers={"location": back})
        elif url.path == "/token":
            form = dict(parse_qsl(route.request.post_data or ""))
            digest = hashlib.sha256(form["code_verifier"].encode()).digest()
            assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == seen["challenge"]
            assert (form["grant_type"], form["code"], form["redirect_uri"]) == (
                "authorization_code",
                "code-1",
                seen["redirect"],
            )
            seen["token"] = token("agent", sub=agent)
            await route.fulfill(json={"access_token": seen["token"], "token_type": "Bearer"}, headers=cors)
        else:
            await route.fulfill(status=404)

    await page.route(f"{CONSOLE}/config.json", config)
    await page.route(f"{issuer}/**", provider)
    await page.goto(f"{CONSOLE}/customers/{customer['id']}")
    await page.get_by_role("button", name="Sign in with your organisation").click()
    await page.get_by_role("heading", name="Single Sign-On SA").wait_for()
    assert page.url == f"{CONSOLE}/customers/{customer['id']}"
    assert seen["redirect"] == f"{CONSOLE}/oidc-callback"
    storage = await page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert seen["token"] not in storage and "code_verifier" not in storage and "crm.pkce" not in storage
    await context.close()
