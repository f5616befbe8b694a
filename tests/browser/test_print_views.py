"""Print and hand-over in a real browser (issue 16 item 5): log in, open a patient, press "Print
slip": the slip shows both identifiers, the drug, its last dose and window end, the blood bank's
requirements and who printed it, and as printed (print media, A4 and Letter) it is one page; the
header's "Shift hand-over" opens the hand-over with the acknowledged note and the escalation.
Screenshots: test-artifacts/print-slip.png, handover.png, print-patient-view.png,
print-header-link.png; PDFs print-slip.pdf (A4),
print-slip-letter.pdf, handover.pdf."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.async_api import Browser, Page, expect

from lisguard.app import Service
from lisguard.domain.context import add_months
from lisguard.store.base import AuditEvent
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import ServiceFactory
from tests.e2e.print_support import (
    DARATUMUMAB,
    PHENOTYPE,
    SCREEN,
    audit,
    hl7_time,
    message,
    secured,
    send,
)

pytestmark = pytest.mark.browser

NAME, DOB = "HALVORSEN^INGRID^M", "19520314"
# a PDF's page objects ("/Type /Page", not the "/Type /Pages" tree)
PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


async def log_in(browser: Browser, svc: Service, token: str, problems: list[str]) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    context.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{svc.http_port}/")
    await page.fill("#login-token", token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    return page


def pages_of(pdf: bytes) -> int:
    return len(PAGE_OBJECT.findall(pdf))


async def test_print_slip_and_handover(browser: Browser, service_factory: ServiceFactory) -> None:
    svc, tokens = await secured(service_factory)
    dose_at = hl7_time(9)
    await send(
        svc,
        message(PHENOTYPE, "MRN950", 40, name=NAME, dob=DOB),
        message(DARATUMUMAB, "MRN950", 9, name=NAME, dob=DOB),
        message(SCREEN, "MRN950", 0.1, name=NAME, dob=DOB),
        message(DARATUMUMAB, "MRN951", 4, name="OKAFOR^CHIDI", dob="19671130"),
        message(SCREEN, "MRN951", 0.05, name="OKAFOR^CHIDI", dob="19671130"),
    )
    alerts = {
        (s.alert.patient, s.alert.rule.value): s.alert.id
        for mrn in ("MRN950", "MRN951")
        for s in await svc.store.list_alerts(patient=f"{mrn}^HOSP")
    }
    problems: list[str] = []
    page = await log_in(browser, svc, tokens["technologist"], problems)
    card = page.locator(f'article[data-id="{alerts["MRN950", "bb-serology"]}"]')
    await card.get_by_role("button", name="Acknowledge").click()
    await page.fill("#ack-note", "DTT panel sent, 2 K- units crossmatched")
    await page.click("#ack-confirm")
    await expect(card.locator(".state")).to_contain_text("Acknowledged by technologist-jo")
    await audit(
        svc.store,
        AuditEvent(
            "alert.escalated",
            datetime.now(UTC),
            "technologist-jo",
            alerts["MRN951", "bb-serology"],
            {"patient": "MRN951^HOSP", "to": "blood bank medical director"},
        ),
    )

    await card.get_by_role("button", name="Patient").click()
    await expect(page.locator("#patient-dialog")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "print-patient-view.png"))
    async with page.expect_popup() as opened:
        await page.get_by_role("button", name="Print slip").click()
    slip = await opened.value
    await slip.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    await expect(slip.locator("#slip")).to_be_visible()
    ids = slip.locator("#slip .ids")
    await expect(ids).to_contain_text("HALVORSEN, INGRID M")
    await expect(ids).to_contain_text("DOB 1952-03-14")
    await expect(ids).to_contain_text("MRN MRN950 (HOSP)")
    row = slip.locator("table.therapies tbody tr")
    await expect(row).to_have_count(1)
    dose = datetime.strptime(dose_at, "%Y%m%d%H%M%S")
    await expect(row).to_contain_text("Daratumumab (IV)")
    await expect(row).to_contain_text(dose.strftime("%Y-%m-%d %H:%M"))  # last dose
    await expect(row).to_contain_text(add_months(dose, 6).strftime("%Y-%m-%d"))  # window end
    await expect(row).to_contain_text("IN WINDOW")
    await expect(slip.locator(".verify")).to_have_text("Verify two identifiers before issue")
    requirements = slip.locator("#slip .req")
    await expect(requirements.first).to_contain_text("Use 0.2 M DTT-treated reagent cells")
    await expect(slip.locator(".req-units")).to_contain_text("give K-negative red cells")
    await expect(slip.locator(".req-units")).to_contain_text("select antigen-matched red cells")
    await expect(slip.locator(".req-spep_ife")).to_contain_text("drug-specific IFE")
    await expect(slip.locator(".printed-by")).to_have_text("technologist-jo")
    await expect(slip.locator("footer")).to_contain_text("knowledge base ")

    await slip.emulate_media(media="print")
    await expect(slip.locator(".toolbar")).to_be_hidden()
    await slip.screenshot(path=str(ARTIFACTS / "print-slip.png"), full_page=True)
    a4 = await slip.pdf(path=str(ARTIFACTS / "print-slip.pdf"), format="A4")
    letter = await slip.pdf(path=str(ARTIFACTS / "print-slip-letter.pdf"), format="Letter")
    print(f"slip PDF: A4 {len(a4)} bytes, Letter {len(letter)} bytes")
    assert (pages_of(a4), pages_of(letter)) == (1, 1)

    await page.locator("#patient-dialog").get_by_role("button", name="Close").click()
    await page.locator("header.bar").screenshot(path=str(ARTIFACTS / "print-header-link.png"))
    async with page.expect_popup() as opened:
        await page.get_by_role("link", name="Shift hand-over").click()
    handover = await opened.value
    await handover.set_viewport_size({"width": 794, "height": 1123})
    await expect(handover.locator("#handover")).to_be_visible()
    blocks = handover.locator(".handover-patient")
    await expect(blocks).to_have_count(2)
    first, second = blocks.nth(0), blocks.nth(1)  # the escalated patient first
    await expect(first.locator(".ids")).to_contain_text("OKAFOR, CHIDI")
    await expect(first.locator(".ids")).to_contain_text("DOB 1967-11-30")
    await expect(first).to_contain_text("ESCALATED")
    await expect(first).to_contain_text("to blood bank medical director")
    await expect(second.locator(".ids")).to_contain_text("MRN MRN950 (HOSP)")
    await expect(second).to_contain_text("DTT panel sent, 2 K- units crossmatched")
    await expect(second).to_contain_text("TYPE AND SCREEN · BBTS")
    await expect(handover.locator(".summary")).to_contain_text("2 patients · 3 open")
    await expect(handover.locator(".printed-by")).to_have_text("technologist-jo")

    # a later start leaves out what did not change since, and says how much
    await handover.fill("#since", datetime.now().strftime("%Y-%m-%dT%H:%M:%S"))
    await handover.get_by_role("button", name="Show").click()
    await expect(handover.locator(".older")).to_contain_text("4 more unresolved alerts")
    await expect(handover.locator(".none-active")).to_have_text("Nothing to hand over since then.")
    await handover.get_by_role("button", name="Last 12 h").click()
    await expect(blocks).to_have_count(2)

    await handover.emulate_media(media="print")
    await handover.screenshot(path=str(ARTIFACTS / "handover.png"), full_page=True)
    await handover.pdf(path=str(ARTIFACTS / "handover.pdf"), format="A4")
    assert problems == []
