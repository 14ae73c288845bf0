"""Browser fixtures: Playwright driving Debian's chromium (deploy/chromium.sh install), never a browser of
Playwright's own. The platform fixtures come from tests/platform.py like every e2e test's."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from servicekit.settings import REPO_ROOT
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
