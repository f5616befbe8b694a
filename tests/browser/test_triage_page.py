"""The triaged queue in a real browser (issue 16 items 2b and 3): logged in as a technologist,
alerts for several patients are grouped per patient (name, date of birth, MRN once, in the
group's header), the groups follow their most urgent alert (HIGH with a crossmatch waiting,
then HIGH, then MEDIUM), old baseline reminders sit in the collapsed Background, severity is
said in words, an alert is acknowledged from the page, a collapsed card lists both its orders,
and a live alert moves its patient's group. Screenshots: test-artifacts/triage-*.png."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from lisguard.app import Service
from lisguard.web.auth import new_token, token_hash
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.browser.test_audience_page import send
from tests.conftest import ServiceFactory
from tests.e2e import triage_feed as feed

pytestmark = pytest.mark.browser

A: feed.Who = {"name": "ANDERSEN^ASTRID", "dob": "19500101"}
B: feed.Who = {"name": "BAKER^BEN", "dob": "19610202"}
C: feed.Who = {"name": "CHEN^CLARA", "dob": "19720303"}
D: feed.Who = {"name": "DIAZ^DANIEL", "dob": "19830404"}


async def seed(service: Service) -> None:
    await send(
        service,
        # A: on daratumumab for 40 days; two crossmatches (the second collapses into the first)
        feed.dose("MRN-A", feed.ago(days=40), **A),
        feed.order("MRN-A", "XA1", feed.CROSSMATCH, feed.ago(hours=2), **A),
        feed.order("MRN-A", "XA2", feed.CROSSMATCH, feed.ago(hours=1, minutes=30), **A),
        # B: an antibody screen, newer than A's crossmatch but no transfusion waiting
        feed.dose("MRN-B", feed.ago(days=20), **B),
        feed.order("MRN-B", "SB1", feed.ANTIBODY_SCREEN, feed.ago(hours=1), **B),
        # C: an SPEP (MEDIUM)
        feed.dose("MRN-C", feed.ago(days=30), **C),
        feed.order("MRN-C", "PC1", feed.SPEP, feed.ago(minutes=30), **C),
        # D: first dose two days ago: the baseline work-up is still the bench's
        feed.dose("MRN-D", feed.ago(days=2), **D),
    )


async def logged_in_page(browser: Browser, service: Service) -> Page:
    token = new_token()
    await service.store.access.add_token(
        "tech-jo", "technologist", token_hash(token), by="test", at=datetime.now(UTC)
    )
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"http://127.0.0.1:{service.http_port}/")
    await page.fill("#login-token", token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    return page


# the contrast of each element's text colour on its own background colour (WCAG 2 formula)
CONTRAST = """els => els.map(e => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = rgb(c).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let node = e, bg = getComputedStyle(node).backgroundColor;
  while (bg === "rgba(0, 0, 0, 0)" && node.parentElement) {
    node = node.parentElement; bg = getComputedStyle(node).backgroundColor; }
  const [hi, lo] = [lum(getComputedStyle(e).color), lum(bg)].sort((a, b) => b - a);
  return (hi + 0.05) / (lo + 0.05);
})"""


def by_mrn(page: Page, section: str, mrn: str) -> Locator:
    return page.locator(f'{section} .patient-group[data-patient="{mrn}^HOSP"]')


async def test_the_queue_is_triaged_and_grouped_per_patient(
    browser: Browser, service_factory: ServiceFactory
) -> None:
    service: Service = await service_factory(http={"auth_required": True})
    await seed(service)
    page = await logged_in_page(browser, service)
    queue = page.locator("#queue")
    heads = queue.locator(".patient-group .group-head .ids")
    await expect(heads).to_have_count(4)
    await expect(heads).to_have_text(
        [
            "ANDERSEN, ASTRID · DOB 1950-01-01 · MRN MRN-A (HOSP)",
            "BAKER, BEN · DOB 1961-02-02 · MRN MRN-B (HOSP)",
            "DIAZ, DANIEL · DOB 1983-04-04 · MRN MRN-D (HOSP)",
            "CHEN, CLARA · DOB 1972-03-03 · MRN MRN-C (HOSP)",
        ]
    )
    # severity in words on every card, in the queue's order
    await expect(queue.locator("article.alert .sev")).to_have_text(
        ["HIGH severity", "HIGH severity", "HIGH severity", "MEDIUM severity"]
    )
    # ... and by colour, with text that reads on it (WCAG AA: at least 4.5:1)
    ratios = await page.locator(".sev, .transfusion, .group-count, .codes").evaluate_all(CONTRAST)
    assert ratios and min(ratios) >= 4.5, ratios
    crossmatch = queue.locator("article.alert", has_text="Crossmatch ordered")
    await expect(crossmatch).to_have_count(1)
    await expect(crossmatch.locator(".repeat")).to_have_text("×2")
    # the main text is what to do; the codes are a quiet line of their own
    await expect(crossmatch.locator(".recs li").first).to_have_text(
        "Use 0.2 M DTT-treated reagent cells for antibody screen/ID and AHG crossmatch."
    )
    await expect(crossmatch.locator(".codes")).to_contain_text("DTT_TREATED_REAGENT_CELLS")
    await expect(crossmatch.locator(".recs")).not_to_contain_text("DTT_TREATED")

    # the background: A's, B's and C's baseline reminders, collapsed below the queue
    background = page.locator("#background")
    await expect(background).to_be_visible()
    await expect(background).not_to_have_attribute("open", "")
    await expect(page.locator("#background-count")).to_have_text("3")
    await expect(background.locator("summary")).to_contain_text("more than 7 days old")
    await expect(queue.locator("article.alert", has_text="Baseline work-up")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "triage-queue.png"), full_page=True)

    await background.locator("summary").click()
    back_heads = page.locator("#background-queue .patient-group .group-head .ids")
    await expect(back_heads).to_have_count(3)
    await expect(back_heads.nth(0)).to_contain_text("MRN-B")  # first dose 20 days ago
    await expect(back_heads.nth(2)).to_contain_text("MRN-A")  # 40 days ago
    await expect(page.locator("#background-queue article.alert .sev")).to_have_text(
        ["HIGH severity"] * 3
    )
    await background.scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "triage-background.png"), full_page=True)

    # acknowledge B's screen from the page
    screen = by_mrn(page, "#queue", "MRN-B").locator("article.alert")
    await screen.get_by_role("button", name="Acknowledge").click()
    await expect(page.locator("#ack-subject")).to_contain_text("BAKER, BEN · DOB 1961-02-02")
    await page.fill("#ack-note", "DTT cells set up")
    await page.click("#ack-confirm")
    await expect(screen.locator(".state")).to_contain_text("Acknowledged by tech-jo")
    alert_id = await screen.get_attribute("data-id")
    record = await service.store.desk.get(str(alert_id))
    assert record is not None and record.status == "acknowledged"
    assert (record.acknowledged_by, record.ack_note) == ("tech-jo", "DTT cells set up")

    # the collapsed card holds two orders: both listed, with test, number and collection
    await crossmatch.locator(".orders summary").click()
    rows = crossmatch.locator(".orders tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("CROSSMATCH 2 UNITS")
    await expect(rows.nth(0)).to_contain_text("XA1")
    await expect(rows.nth(0)).to_contain_text("this alert")
    await expect(rows.nth(1)).to_contain_text("XA2")
    await expect(rows.nth(1)).to_contain_text("repeat")
    collected = feed.ago(hours=1, minutes=30).strftime("%Y-%m-%d")
    await expect(rows.nth(1)).to_contain_text(collected)
    await crossmatch.scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "triage-orders.png"))

    # live: C gets a type & screen now; C's group moves to the top, the card stays open
    await send(service, feed.order("MRN-C", "TC1", feed.TYPE_AND_SCREEN, feed.ago(minutes=1), **C))
    await expect(heads.first).to_contain_text("MRN-C")
    await expect(heads).to_have_count(4)
    first_group = queue.locator(".patient-group").first
    await expect(first_group.locator("article.alert .sev")).to_have_text(
        ["HIGH severity", "MEDIUM severity"]
    )
    await expect(first_group.locator(".transfusion")).to_have_text("Type & screen ordered")
    await expect(crossmatch.locator(".orders tbody tr")).to_have_count(2)
    await page.screenshot(path=str(ARTIFACTS / "triage-live.png"), full_page=True)

    async with aiohttp.ClientSession() as session:  # the page's order is the API's
        url = f"http://127.0.0.1:{service.http_port}/api/alerts?section=queue"
        headers = {"Authorization": f"Bearer {await technologist(service)}"}
        async with session.get(url, headers=headers) as resp:
            body = await resp.json()
    shown = await queue.locator("article.alert").evaluate_all("els => els.map(e => e.dataset.id)")
    patients = [v["patient_key"] for v in body["alerts"]]
    grouped = sorted(body["alerts"], key=lambda v: patients.index(v["patient_key"]))
    assert shown == [v["id"] for v in grouped]


async def technologist(service: Service) -> str:
    token = new_token()
    await service.store.access.add_token(
        "tech-api", "technologist", token_hash(token), by="test", at=datetime.now(UTC)
    )
    return token
