"""Two identifiers and the test on each card (issue 16), in a real browser: the patient's name,
date of birth and MRN come first; the ordered test (OBR-4 text and code) and its collection time
are named. Screenshot: test-artifacts/technologist-two-identifiers.png."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from lisguard.app import Service
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_audience_page import send
from tests.browser.test_technologist_page import open_page

pytestmark = pytest.mark.browser

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||HALVORSEN^INGRID^M||19520314|F\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|SCR-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||HALVORSEN^INGRID^M||19520314|F\r"
    "PV1|1|O|4W^12^B\r"
    "ORC|NW|TS-{mrn}\r"
    "OBR|1|TS-{mrn}||BBTS^TYPE AND SCREEN^L^890-4^Antibody screen^LN|||20260302074500\r"
)


async def test_a_card_shows_two_identifiers_and_the_test(
    browser: Browser, service: Service
) -> None:
    await send(service, DOSE.format(mrn="MRN900"), SCREEN.format(mrn="MRN900"))
    (screen,) = [
        s.alert
        for s in await service.store.list_alerts(patient="MRN900^HOSP")
        if s.alert.rule.value == "bb-serology"
    ]
    page = await open_page(browser, service)
    card = page.locator(f'article[data-id="{screen.id}"]')
    # the identifiers head the patient's group of cards (the triaged queue: one per patient)
    ids = page.locator(".patient-group", has=card).locator(".ids")
    await expect(ids).to_contain_text("HALVORSEN, INGRID M")
    await expect(ids).to_contain_text("DOB 1952-03-14")
    await expect(ids).to_contain_text("MRN MRN900 (HOSP)")
    await expect(card.locator(".facts")).to_contain_text("Test TYPE AND SCREEN · BBTS")
    await expect(card.locator(".facts")).to_contain_text("Collected 2026-03-02 07:45")
    baseline = page.locator("article.alert", has_text="Baseline work-up")
    await expect(page.locator(".patient-group", has=baseline).locator(".ids")).to_contain_text(
        "HALVORSEN, INGRID M"
    )
    await expect(baseline.locator(".facts")).not_to_contain_text("Test ")  # a dose, not a test
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-two-identifiers.png"), full_page=True)


async def test_a_patient_link_opens_the_patient_view(browser: Browser, service: Service) -> None:
    """A CDS Hooks card's source link (/#patient=KEY) opens that patient's view."""
    await send(service, DOSE.format(mrn="MRN901"))
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(f"http://127.0.0.1:{service.http_port}/#patient=MRN901%5EHOSP")
    dialog = page.locator("#patient-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("HALVORSEN, INGRID M")
    await expect(dialog).to_contain_text("Daratumumab")
    # a link to a patient lisguard never heard of says so, it does not fail silently
    await page.goto(f"http://127.0.0.1:{service.http_port}/#patient=NOBODY%5EHOSP")
    await page.reload()
    await expect(page.locator("#patient-dialog")).to_contain_text("knows nothing")
