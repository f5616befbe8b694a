"""The escalation banner in a real browser (Playwright driving Debian's Chromium) against the
real service with tokens required and a 3-second escalation limit: two HIGH alerts nobody
acknowledges put a red banner on the technologist page and on the manager page (both logged
in); the manager's browser, which allowed notifications, gets one notification per alert and
none again after a reload; acknowledging one on the queue brings both banners down to one
without a reload; the Sound box is remembered. No console error or failed request on either
page. Screenshots: test-artifacts/escalation-banner.png (queue), escalation-banner-manager.png.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from lisguard.app import Service
from lisguard.transport.mllp import MllpClient
from lisguard.web.auth import new_token, token_hash
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import ServiceFactory

pytestmark = pytest.mark.browser

AFTER_MINUTES = 0.05  # 3 s
LOGGED_OUT = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
# a first dose given an hour ago: a baseline work-up alert of today, in the queue itself
DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|{at}||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19500102\r"
    "PV1|1|O|{location}\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|{at}|{at}|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
# counts the page's notifications; each still goes to the browser's own Notification
COUNT_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push([title, options.tag]);
    }
  };
})();
"""


def watch(page: Page, problems: list[str]) -> None:
    page.set_default_timeout(WAIT_MS)
    # script errors, failed requests and Content-Security-Policy refusals show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )


async def context(browser: Browser, svc: Service, *, notifications: bool) -> BrowserContext:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
    if notifications:
        await ctx.grant_permissions(["notifications"], origin=f"http://127.0.0.1:{svc.http_port}")
        await ctx.add_init_script(COUNT_NOTIFICATIONS)
    return ctx


async def test_the_banner_on_every_page(browser: Browser, service_factory: ServiceFactory) -> None:
    svc: Service = await service_factory(
        http={"auth_required": True},
        escalation={"after_minutes": AFTER_MINUTES, "check_seconds": 0.2},
    )
    base = f"http://127.0.0.1:{svc.http_port}"
    tokens = {role: new_token() for role in ("technologist", "manager")}
    for role, token in tokens.items():
        await svc.store.access.add_token(
            f"{role}-jo", role, token_hash(token), by="test", at=datetime.now(UTC)
        )
    problems: list[str] = []

    bench_ctx = await context(browser, svc, notifications=False)
    bench = await bench_ctx.new_page()
    watch(bench, problems)
    await bench.goto(f"{base}/")
    await expect(bench.locator("#login")).to_be_visible()
    await expect(bench.locator("#escalation-banner")).to_be_hidden()
    await bench.fill("#login-token", tokens["technologist"])
    await bench.get_by_role("button", name="Log in").click()
    await expect(bench.locator("#live")).to_have_attribute("data-state", "live")

    office_ctx = await context(browser, svc, notifications=True)
    office = await office_ctx.new_page()
    watch(office, problems)
    await office.goto(f"{base}/manager")
    await office.get_by_label("API token (role manager or admin)").fill(tokens["manager"])
    await office.get_by_role("button", name="Log in").click()
    await expect(office.locator("#app")).to_be_visible()

    assert svc.mllp_port
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        for mrn, location in (("BAN1", "INFUS"), ("BAN2", "4W")):
            at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%d%H%M%S+0000")
            ack = await client.send(DOSE.format(mrn=mrn, location=location, at=at).encode())
            assert "MSA|AA|" in ack
    first = (await svc.store.list_alerts(patient="BAN1^HOSP"))[0].alert.id
    await expect(bench.locator(f'article[data-id="{first}"]')).to_be_visible()

    for page in (bench, office):
        banner = page.locator("#escalation-banner")
        await expect(banner).to_be_visible(timeout=WAIT_MS)
        await expect(banner).to_contain_text("2 HIGH alerts not acknowledged for more than 3 s")
        await expect(banner).to_contain_text("Baseline work-up before the first anti-CD38 dose")
        await expect(banner).to_contain_text("INFUS")  # the oldest one's point of care
        await expect(banner).not_to_contain_text("BAN1")  # no patient on a banner
        box = await banner.bounding_box()
        assert box is not None and box["y"] == 0  # above everything
    await expect(bench.get_by_role("button", name="Enable notifications")).to_be_visible()
    await expect(office.get_by_role("button", name="Enable notifications")).to_be_hidden()
    await expect(office.get_by_role("link", name="Open the queue")).to_have_attribute(
        "href", f"/#alert={first}"
    )
    notes = await office.evaluate("window.__notes")
    assert sorted(tag for _, tag in notes) == sorted(
        f"lisguard-escalation-{a.alert.id}" for a in await svc.store.list_alerts()
    )
    assert all(title == "HIGH alert not acknowledged" for title, _ in notes)

    ARTIFACTS.mkdir(exist_ok=True)
    await bench.screenshot(path=str(ARTIFACTS / "escalation-banner.png"))
    await office.screenshot(path=str(ARTIFACTS / "escalation-banner-manager.png"))

    # the queue's link finds the card; acknowledging it takes both banners down to one, live
    await bench.get_by_role("link", name="Show in queue").click()
    card = bench.locator(f'article[data-id="{first}"]')
    await card.get_by_role("button", name="Acknowledge").click()
    await bench.click("#ack-confirm")
    for page in (bench, office):
        await expect(page.locator("#escalation-banner")).to_contain_text(
            "1 HIGH alert not acknowledged for more than 3 s"
        )
        await expect(page.locator("#escalation-banner")).to_contain_text("4W")

    # sound: off by default, remembered; a reload notifies nothing again
    sound = office.get_by_label("Sound")
    assert not await sound.is_checked()
    await sound.check()
    await office.reload()
    await expect(office.locator("#escalation-banner")).to_contain_text("1 HIGH alert")
    await expect(office.get_by_label("Sound")).to_be_checked()
    assert await office.evaluate("window.__notes") == []

    await bench_ctx.close()
    await office_ctx.close()
    # the manager page's own first look, logged out (manager.js asks /api/me): nothing else
    assert sorted(problems) == sorted([f"401 {base}/api/me", LOGGED_OUT])
