"""The manager page in a real browser (Playwright driving Debian's Chromium) against the real
service with tokens required: log in, read the daily summary, filter the audit log, download
the CSV and check what is in it, verify the chain. The run leaves a screenshot in
test-artifacts/manager-page.png."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from lisguard.app import Service
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.store.audit_search import AuditQuery
from lisguard.transport.mllp import MllpClient, msa_code
from lisguard.web.audit_query import read_csv
from lisguard.web.auth import new_token, token_hash
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import SAMPLES, ServiceFactory

pytestmark = pytest.mark.browser

FEEDS = [SAMPLES / "03-rxa-then-type-and-screen", SAMPLES / "01-baseline-workup"]
PATIENT = "MRN03001^SMH"
LOGGED_OUT = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"


def base(svc: Service) -> str:
    return f"http://127.0.0.1:{svc.http_port}"


@pytest.fixture
async def secured(service_factory: ServiceFactory) -> tuple[Service, dict[str, str]]:
    """The service with tokens required, a token per role, and the sample feeds sent over MLLP;
    the technologist has acknowledged the type & screen alert through the alert API."""
    svc: Service = await service_factory(http={"auth_required": True})
    tokens = {role: new_token() for role in ("manager", "technologist")}
    for role, token in tokens.items():
        await svc.store.access.add_token(
            f"{role}-jo", role, token_hash(token), by="test", at=datetime.now(UTC)
        )
    assert svc.mllp_port
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        for feed in FEEDS:
            for path in sorted(feed.glob("*.hl7")):
                for text in split_messages(decode_bytes(path.read_bytes())):
                    assert msa_code(await client.send(text.encode())) in ("AA", "CA")
    [screen] = await svc.store.list_alerts(rule="bb-serology")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://127.0.0.1:{svc.http_port}/api/alerts/{screen.alert.id}/acknowledge",
            json={"note": "DTT cells requested"},
            headers={"Authorization": f"Bearer {tokens['technologist']}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
    return svc, tokens


async def log_in(browser: Browser, svc: Service, token: str, problems: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(WAIT_MS)
    # script errors, failed requests and Content-Security-Policy refusals show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    await page.goto(f"{base(svc)}/manager")
    await expect(page.get_by_label("API token (role manager or admin)")).to_be_visible()
    await page.get_by_label("API token (role manager or admin)").fill(token)
    await page.get_by_role("button", name="Log in").click()
    return page


async def test_filter_the_log_and_download_the_csv(
    browser: Browser, secured: tuple[Service, dict[str, str]]
) -> None:
    svc, tokens = secured
    problems: list[str] = []
    page = await log_in(browser, svc, tokens["manager"], problems)
    await expect(page.locator("#who-name")).to_have_text("manager-jo (manager)")
    # the page asks who is logged in before anyone is: the only refusal expected
    assert sorted(problems) == sorted([f"401 {base(svc)}/api/me", LOGGED_OUT])
    problems.clear()

    # the summary: five messages, three alerts (two rules), one acknowledged
    tiles = page.locator("#tiles .tile")
    await expect(tiles.nth(0)).to_contain_text("5messages received")
    await expect(tiles.nth(1)).to_contain_text("3alerts raised")
    await expect(tiles.nth(2)).to_contain_text("1alerts acknowledged")
    await expect(page.locator("#tiles")).to_contain_text("min")  # a median, not a dash
    await expect(page.locator("#chart-alerts .legend")).to_contain_text("bb-serology")
    await expect(page.locator("#chart-alerts > svg rect")).to_have_count(2)  # one bar, two rules

    # filter: this patient's alert events
    await page.get_by_label("Patient").fill(PATIENT)
    await page.get_by_label("Event type").fill("alert.")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("#log-table tbody tr")
    await expect(page.locator("#log-status")).to_have_text("3 events shown, newest first.")
    await expect(rows).to_have_count(3)  # two raised, one acknowledged
    await expect(rows.nth(0)).to_contain_text("alert.acknowledged")
    await expect(rows.nth(0)).to_contain_text("technologist-jo")
    shown = [int(s) for s in await page.locator("#log-table tbody td.num").all_inner_texts()]

    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("lisguard-audit-")
    assert download.suggested_filename.endswith(".csv")
    saved = ARTIFACTS / "manager-export.csv"
    ARTIFACTS.mkdir(exist_ok=True)
    await download.save_as(saved)
    events = list(read_csv(saved.read_text(encoding="utf-8")))
    assert [e.seq for e in events] == shown  # the same events as the table, same order
    assert {e.event.kind for e in events} == {"alert.raised", "alert.acknowledged"}
    assert all(e.event.detail["patient"] == PATIENT for e in events)
    assert {e.event.detail["rule"] for e in events} == {"baseline-workup", "bb-serology"}
    # the export is in the log, with who and which filters
    [exported] = await svc.store.access.search_audit(AuditQuery(kinds=("audit.exported",)))
    assert exported.event.actor == "manager-jo"
    assert exported.event.detail["filters"] == {"patient": PATIENT, "kind": "alert."}

    await page.get_by_role("button", name="Verify chain").click()
    await expect(page.locator("#verify-result")).to_contain_text("Intact")
    await page.screenshot(path=str(ARTIFACTS / "manager-page.png"), full_page=True)
    assert problems == []


async def test_a_technologist_is_not_let_in(
    browser: Browser, secured: tuple[Service, dict[str, str]]
) -> None:
    svc, tokens = secured
    page = await log_in(browser, svc, tokens["technologist"], [])
    await expect(page.locator("#login-error")).to_contain_text("needs manager or admin")
    await expect(page.locator("#app")).to_be_hidden()
    status = await page.evaluate("fetch('/api/audit').then(r => r.status)")
    assert status == 403  # the API refuses as well, whatever the page shows
