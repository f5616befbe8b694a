"""The technologist page in a real browser (Playwright driving Debian's Chromium): a message sent
over MLLP makes its alert appear without a reload; acknowledging it on the page shows in the API.
The run leaves a screenshot in test-artifacts/technologist-page.png."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from lisguard.app import Service
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.transport.mllp import MllpClient
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import SAMPLES, ServiceFactory

pytestmark = pytest.mark.browser

FEED = SAMPLES / "03-rxa-then-type-and-screen"


async def send_file(service: Service, path: Path) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in split_messages(decode_bytes(path.read_bytes())):
            ack = await client.send(text.encode())
            assert "|AA|" in ack or "MSA|CA|" in ack, ack  # original or enhanced mode


async def open_page(browser: Browser, service: Service) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"http://127.0.0.1:{service.http_port}/")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    return page


async def test_alert_appears_live_and_is_acknowledged(browser: Browser, service: Service) -> None:
    page = await open_page(browser, service)
    await expect(page.locator("#empty")).to_be_visible()
    await page.fill("#who", "JS")
    await page.locator("#who").dispatch_event("change")
    # a mark in this document: it survives only if the page is never reloaded
    await page.evaluate("window.__sameDocument = true")

    await send_file(service, FEED / "01-vxu-v04-rxa-daratumumab-iv.hl7")
    await send_file(service, FEED / "02-orm-o01-type-and-screen.hl7")
    [screen] = await service.store.list_alerts(rule="bb-serology")
    card = page.locator(f'article[data-id="{screen.alert.id}"]')
    await expect(card).to_be_visible(timeout=WAIT_MS)
    assert await page.evaluate("window.__sameDocument === true")
    await expect(card.locator(".sev")).to_contain_text("HIGH")  # severity as text, not colour only
    await expect(card).to_contain_text("Use 0.2 M DTT-treated reagent cells")
    # the patient's identifiers head the card's group (one header per patient)
    await expect(page.locator(".patient-group", has=card).locator(".ids")).to_contain_text(
        "MRN03001"
    )

    await card.get_by_role("button", name="Acknowledge").click()
    await page.fill("#ack-note", "DTT cells requested")
    await page.click("#ack-confirm")
    await expect(card.locator(".state")).to_contain_text("Acknowledged by JS")

    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{service.http_port}/api/alerts/{screen.alert.id}"
        async with session.get(url) as resp:
            view = await resp.json()
    assert view["status"] == "acknowledged"
    assert (view["acknowledged"]["by"], view["acknowledged"]["note"]) == (
        "JS",
        "DTT cells requested",
    )

    await expect(page.locator("#count-acknowledged")).to_have_text("Acknowledged 1")
    await expect(page.locator("#count-open")).to_have_text("Open 1")  # the baseline work-up
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-page.png"), full_page=True)


async def test_patient_view_and_resolve(browser: Browser, service: Service) -> None:
    for name in sorted(p.name for p in FEED.glob("*.hl7")):
        await send_file(service, FEED / name)
    page = await open_page(browser, service)
    [screen] = await service.store.list_alerts(rule="bb-serology")
    card = page.locator(f'article[data-id="{screen.alert.id}"]')
    await card.get_by_role("button", name="Patient").click()
    dialog = page.locator("#patient-dialog")
    await expect(dialog).to_contain_text("Daratumumab (IV)")
    await expect(dialog).to_contain_text("Interference window ends")
    await expect(dialog).to_contain_text("2026-08-03")  # six months after the last dose
    await expect(dialog.locator(".history")).to_contain_text("IRX0203118842")  # evidence message
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-patient.png"))
    await dialog.get_by_role("button", name="Close").click()

    await card.get_by_role("button", name="Resolve…").click()
    await page.check("input[name=resolution][value=not-applicable]")
    await page.click("#resolve-confirm")
    await expect(page.locator("#resolve-error")).to_contain_text("'reason' is required")
    await page.fill("#resolve-reason", "screen already done with DTT cells")
    await page.click("#resolve-confirm")
    await expect(card).to_have_count(0)  # resolved alerts leave the default queue
    record = await service.store.desk.get(screen.alert.id)
    assert record is not None and (record.status, record.resolution) == (
        "resolved",
        "not-applicable",
    )


async def test_patient_view_shows_the_survivor_and_its_aliases(
    browser: Browser, service: Service
) -> None:
    """A type & screen still sent under a merged-away MRN: its card opens the survivor's record,
    which names the retired MRN; a free-text or order-question exposure is never a dose."""
    merged = SAMPLES / "21-merge-alias-and-link"
    for path in sorted(merged.glob("0[1-3]*.hl7")):
        await send_file(service, path)
    page = await open_page(browser, service)
    [screen] = await service.store.list_alerts(rule="bb-serology")
    assert screen.alert.patient == "MRN21001"  # sent as MRN21002, merged into MRN21001
    card = page.locator(f'article[data-id="{screen.alert.id}"]')
    await card.get_by_role("button", name="Patient").click()
    dialog = page.locator("#patient-dialog")
    await expect(dialog).to_contain_text("Also known as (merged): MRN21002^LKH")
    await expect(dialog).to_contain_text("dose given")
    history = dialog.locator(".history")
    await expect(history).to_contain_text("under MRN21002^LKH (before the merge)")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-patient-merged.png"))


def as_test_message(text: str) -> str:
    """The message as the LIS's test system sends it: MSH-11 T."""
    msh, _, rest = text.partition("\r")
    fields = msh.split("|")
    fields[10] = "T"
    return "|".join(fields) + "\r" + rest


async def test_alerts_of_test_messages_stay_out_of_the_queue_and_say_test(
    browser: Browser, service_factory: ServiceFactory
) -> None:
    """A site that takes MSH-11 T: a test message's alert never shows in the production queue,
    not even live; under Feed "Test messages" it carries a TEST badge and offers no snooze."""
    service: Service = await service_factory(ingest={"processing_ids": ["P", "T"]})
    page = await open_page(browser, service)
    texts = [
        text
        for path in sorted(FEED.glob("*.hl7"))
        for text in split_messages(decode_bytes(path.read_bytes()))
    ]
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in texts:
            assert "|AA|" in await client.send(as_test_message(text).encode())
    await expect(page.locator("#count-test")).to_have_text("Test 2")
    await expect(page.locator("#empty")).to_be_visible()  # live, but not in this queue
    for path in sorted(FEED.glob("*.hl7")):  # the same patient for real: alerts of its own
        await send_file(service, path)
    await expect(page.locator("article.alert")).to_have_count(2)
    await expect(page.locator(".test-badge")).to_have_count(0)

    await page.select_option("#f-test", "only")
    cards = page.locator("article.alert.test")
    await expect(cards).to_have_count(2)
    await expect(page.locator("article.alert:not(.test)")).to_have_count(0)
    await expect(cards.locator(".test-badge")).to_have_text(["TEST", "TEST"])
    await expect(cards.get_by_role("button", name="Snooze…")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-test-alerts.png"), full_page=True)
