"""The technologist page in a real browser (Playwright driving Debian's Chromium): each card says
in words who acts on it (its audience), the Audience filter narrows the queue (also for alerts
arriving live), and the patient view shows immunoglobulin products, HBV serology and the latest
IgG. Screenshots: test-artifacts/technologist-audience*.png, technologist-patient-ig.png."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from lisguard.app import Service
from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import Exposure, ImmunoglobulinResult, PatientState, SerologyResult
from lisguard.store.base import NewMessage
from lisguard.transport.mllp import MllpClient
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_technologist_page import open_page
from tests.conftest import ServiceFactory
from tests.e2e.test_delivery import DOSE, SCREEN
from tests.e2e.test_delivery_audience import BISPECIFIC

pytestmark = pytest.mark.browser

SITE_IVIG = "drugs:\n  - id: test_ivig\n    name: Testagam 10% (IVIG)\n    drug_class: ivig\n"


async def send(service: Service, *texts: str) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in texts:
            assert "MSA|AA|" in await client.send(text.encode())


async def test_cards_show_their_audience_and_the_filter_narrows_the_queue(
    browser: Browser, service: Service
) -> None:
    await send(service, DOSE.format(mrn="MRN700"), SCREEN.format(mrn="MRN700"))
    await send(service, BISPECIFIC.format(mrn="MRN701"))
    alerts = {
        s.alert.rule.value: s.alert.id
        for mrn in ("MRN700", "MRN701")
        for s in await service.store.list_alerts(patient=f"{mrn}^HOSP")
    }
    page = await open_page(browser, service)
    cards = page.locator("article.alert")
    await expect(cards).to_have_count(3)
    clinic = page.locator(f'article[data-id="{alerts["ivig-prophylaxis"]}"]')
    bench = page.locator(f'article[data-id="{alerts["bb-serology"]}"]')
    await expect(clinic.locator(".audience")).to_have_text("For Clinic")
    await expect(clinic).to_contain_text("Bispecific started without IVIG prophylaxis")
    await expect(clinic).to_contain_text("consider primary IVIG prophylaxis")
    await expect(bench.locator(".audience")).to_have_text("For Blood bank")
    await expect(page.locator("#f-audience option")).to_have_text(
        ["All audiences", "Blood bank", "Serology", "Clinic", "Protein lab", "Flow lab"]
    )
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-audience.png"), full_page=True)

    async with page.expect_response(lambda r: "audience=clinic" in r.url):
        await page.select_option("#f-audience", "clinic")
    await expect(cards).to_have_count(1)
    await expect(clinic).to_be_visible()

    # a blood bank alert arriving live stays out of the clinic's view
    await send(service, DOSE.format(mrn="MRN702"))
    await expect(page.locator("#count-open")).to_have_text("Open 4")  # it did arrive
    await expect(cards).to_have_count(1)
    await page.screenshot(path=str(ARTIFACTS / "technologist-audience-clinic.png"), full_page=True)

    await page.select_option("#f-audience", "blood_bank")
    await expect(cards).to_have_count(3)
    await expect(clinic).to_have_count(0)
    await page.select_option("#f-audience", "")
    await expect(cards).to_have_count(4)


async def stored_patient(service: Service) -> str:
    """A patient on daratumumab given IVIG, with HBV serology and a low IgG on file, and an
    ig-passive-antibody alert on the queue: written to the store as the rules would leave it."""
    state = PatientState(
        key="MRN710^HOSP",
        exposures={
            "test_ivig": Exposure(
                drug="test_ivig",
                first_point=datetime(2026, 1, 5, 9, 0),
                last_point=datetime(2026, 2, 2, 9, 0),
                last_dose=datetime(2026, 2, 2, 9, 0),
                kinds=["administration"],
                doses=2,
                grams=70.0,
            ),
            "daratumumab_iv": Exposure(
                drug="daratumumab_iv",
                first_point=datetime(2026, 1, 10, 9, 0),
                last_point=datetime(2026, 2, 20, 9, 0),
                last_dose=datetime(2026, 2, 20, 9, 0),
                kinds=["administration"],
                doses=3,
            ),
        },
        hbv=[
            SerologyResult(
                marker="hbsag", time=datetime(2026, 1, 4, 8, 0), value="Nonreactive", reactive=False
            ),
            SerologyResult(
                marker="anti_hbc", time=datetime(2026, 1, 4, 8, 0), value="Reactive", reactive=True
            ),
        ],
        immunoglobulins={
            "igg": ImmunoglobulinResult(
                test="igg",
                time=datetime(2026, 2, 1, 7, 30),
                value=3.1,
                units="g/L",
                mg_dl=310.0,
                low=7.0,
                flags=["L"],
                below_range=True,
            ),
            "iga": ImmunoglobulinResult(
                test="iga",
                time=datetime(2026, 2, 1, 7, 30),
                value=95.0,
                units="mg/dL",
                mg_dl=95.0,
                low=70.0,
                below_range=False,
            ),
        },
    )
    alert = Alert(
        id=alert_id("MRN710^HOSP", RuleId.IG_PASSIVE_ANTIBODY, "TS710"),
        rule=RuleId.IG_PASSIVE_ANTIBODY,
        patient="MRN710",
        patient_authority="HOSP",
        message="SCR-710",
        order="TS710",
        severity=Severity.MEDIUM,
        recommendations=(Recommendation.PASSIVE_ANTIBODY_FROM_IG,),
        text="Testagam 10% (IVIG) last given 2026-02-02 (2 doses, 70 g): anti-A, anti-B and"
        " anti-D found now may be passive.",
        location="4W",
        audience=Audience.BLOOD_BANK,
    )
    now = datetime.now(UTC)
    async with service.store.transaction() as tx:
        await tx.save_patient(state)
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|...",
                content_hash="h-710",
                received_at=now,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", "SCR-710"),
            )
        )
        await tx.add_alerts([alert], message_id=message_id, created_at=now)
    return alert.id


async def test_patient_view_shows_immunoglobulin_products_hbv_and_igg(
    browser: Browser, service_factory: ServiceFactory, tmp_path: Path
) -> None:
    site = tmp_path / "site-ivig.yaml"
    site.write_text(SITE_IVIG)
    service: Service = await service_factory(knowledge={"files": [site]})
    alert = await stored_patient(service)
    page = await open_page(browser, service)
    card = page.locator(f'article[data-id="{alert}"]')
    await expect(card.locator(".audience")).to_have_text("For Blood bank")
    await expect(card).to_contain_text("Passive antibody from immunoglobulin (IVIG/SCIG/RhIG)")
    await card.get_by_role("button", name="Patient").click()
    dialog = page.locator("#patient-dialog")
    products = dialog.locator("table.products")
    await expect(products.locator("tbody tr")).to_have_count(1)
    await expect(products).to_contain_text("Testagam 10% (IVIG)")
    await expect(products).to_contain_text("IVIG")
    await expect(products).to_contain_text("2026-02-02 09:00")
    await expect(products).to_contain_text("70 g")
    await expect(products).to_contain_text("2026-05-02")  # passive window: 3 months
    # the antibody table keeps the therapeutic antibodies only
    await expect(dialog.locator("table").first).to_contain_text("Daratumumab (IV)")
    await expect(dialog.locator("table").first).not_to_contain_text("Testagam")
    hbv = dialog.locator("table.hbv")
    await expect(hbv.locator("tbody tr")).to_have_text(
        ["Anti-HBc2026-01-04 08:00ReactiveREACTIVE", "HBsAg2026-01-04 08:00Nonreactivenon-reactive"]
    )
    igs = dialog.locator("table.immunoglobulins")
    await expect(igs.locator("tbody tr").nth(0)).to_contain_text("IgG")
    await expect(igs.locator("tbody tr").nth(0)).to_contain_text("3.1 g/L")
    await expect(igs.locator("tbody tr").nth(0)).to_contain_text("310 mg/dL")
    await expect(igs.locator("tbody tr").nth(0).locator(".low")).to_have_text("LOW (below range)")
    await expect(igs.locator("tbody tr").nth(1)).to_contain_text("IgA")
    await expect(igs.locator("tbody tr").nth(1)).to_contain_text("no")
    await expect(dialog.locator(".history")).to_contain_text("for Blood bank")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "technologist-patient-ig.png"))
