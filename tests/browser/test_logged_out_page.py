"""The technologist page when logged out (issue 16 small fault): only the login shows - no
filters, no "Connecting...", no counts - and the console stays clean (no 401); after logging
in the queue works. Screenshot: test-artifacts/technologist-logged-out.png."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.async_api import Browser, expect

from lisguard.web.auth import new_token, token_hash
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import ServiceFactory

pytestmark = pytest.mark.browser


async def test_logged_out_shows_the_login_alone(
    browser: Browser, service_factory: ServiceFactory
) -> None:
    svc = await service_factory(http={"auth_required": True})
    token = new_token()
    await svc.store.access.add_token(
        "tech-jo", "technologist", token_hash(token), by="test", at=datetime.now(UTC)
    )
    problems: list[str] = []
    page = await browser.new_page(viewport={"width": 1300, "height": 800})
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    await page.goto(f"http://127.0.0.1:{svc.http_port}/")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator(".filters")).to_be_hidden()
    await expect(page.locator("#live")).to_be_hidden()
    await expect(page.locator("#count-open")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-logged-out.png"), full_page=True)
    assert problems == []  # no 401 in the console

    await page.fill("#login-token", token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator(".filters")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()
