"""The message browser in a real browser (Playwright driving Debian's Chromium) against the real
service with tokens required: an admin finds a message and reads it field by field, finds the
dead letter the site's settings refused, fixes the settings file, reloads, replays it from the
page, and sees it AA with its alert raised once. Screenshots: test-artifacts/message-browser.png
and test-artifacts/replay.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from lisguard.app import Service
from lisguard.transport.mllp import msa_code
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.e2e import message_support as feed

pytestmark = pytest.mark.browser

OTHER = "MRN66002"
LOGGED_OUT = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Service, dict[str, str], Path]]:
    url = f"sqlite:///{tmp_path / 'lisguard.db'}"
    # the infusion centre's administrations (RAS) were refused while that feed was validated
    config = feed.settings_file(tmp_path, url, ingest={"type_actions": {"RAS": "reject"}})
    svc = await feed.start_service(config)
    try:
        tokens = await feed.add_tokens(svc, "admin", "manager")
        acks = await feed.send_mllp(
            svc,
            feed.known_order("K1", OTHER),
            feed.screen("S2", OTHER, n=2),  # bb-serology for the other patient
            feed.dose("D1"),  # refused: a dead letter
            feed.screen("S1"),
            feed.screen("S1"),  # resent
        )
        assert [msa_code(a) for a in acks] == ["AA", "AA", "AR", "AA", "AA"]
        yield svc, tokens, config
    finally:
        await svc.stop()


async def log_in(browser: Browser, svc: Service, token: str, problems: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    await page.goto(f"{feed.base_url(svc)}/messages")
    await page.get_by_label("API token (role manager or admin)").fill(token)
    await page.get_by_role("button", name="Log in").click()
    return page


async def test_find_a_dead_letter_fix_the_site_and_replay_it(
    browser: Browser, site: tuple[Service, dict[str, str], Path]
) -> None:
    svc, tokens, config = site
    problems: list[str] = []
    page = await log_in(browser, svc, tokens["admin"], problems)
    await expect(page.locator("#who-name")).to_have_text("admin-jo (admin)")
    assert sorted(set(problems)) == sorted({f"401 {feed.base_url(svc)}/api/me", LOGGED_OUT})
    problems.clear()
    await expect(page.locator("#kb-state")).to_contain_text("types: RAS reject")

    # "did lisguard get S2, what did it answer, what did it do?"
    await page.get_by_label("Control ID (MSH-10)").fill("S2")
    await page.get_by_role("button", name="Search", exact=True).click()
    rows = page.locator("#results tbody tr")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("button", name="S2").click()
    detail = page.locator("#detail")
    await expect(page.locator("#detail-title")).to_contain_text("Message #2 · ORM^O01 · S2")
    await expect(page.locator("#segments")).to_contain_text("Patient Identifier List")
    await expect(page.locator("#segments")).to_contain_text("Universal Service Identifier")
    await expect(page.locator("#acks")).to_contain_text("MSA|AA|S2")
    await expect(page.locator("#alerts")).to_contain_text("bb-serology")
    await expect(page.locator("#names-note")).to_contain_text("HL7 v2.5.1, the version in MSH-12")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "message-browser.png"), full_page=True)

    # the dead letters: the refused administration
    await page.get_by_role("button", name="Close").click()
    await page.get_by_label("Control ID (MSH-10)").fill("")
    await page.get_by_role("button", name="Show dead letters").click()
    await expect(rows).to_have_count(1)
    dead = rows.first
    await expect(dead).to_contain_text("D1")
    await expect(dead).to_contain_text("AR refused")
    await expect(dead).to_contain_text("message type 'RAS^O17' is not accepted here")

    # the fix: the site takes RAS now; reloaded from the page, no restart
    feed.settings_file(config.parent, svc.settings.store.url.get_secret_value())
    await page.get_by_role("button", name="Reload knowledge and ingest settings").click()
    await expect(page.locator("#kb-result")).to_contain_text("Reloaded")
    await expect(page.locator("#kb-state")).not_to_contain_text("RAS reject")

    # replay it from the page
    await dead.get_by_role("checkbox").check()
    await page.get_by_label("Why (the fix made; kept in the audit log)").fill(
        "RAS taken again: type_actions line removed from lisguard.yaml"
    )
    await page.get_by_role("button", name="Replay selected (1)").click()
    result = page.locator("#replay-results li")
    await expect(result).to_have_count(1)
    await expect(result).to_contain_text("accepted, AA → new message #5, 1 new alert")
    # the list (dead letters still) says what became of it
    await expect(rows.first).to_contain_text("Replayed")
    await expect(rows.first).to_contain_text("accepted → #5")
    await page.locator("#results").screenshot(path=str(ARTIFACTS / "replay-list.png"))

    # the replayed message: AA, its alert once
    await page.get_by_label("Answered").select_option("")
    await page.get_by_label("Control ID (MSH-10)").fill("D1")
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("AA accepted")
    await expect(rows.nth(0)).to_contain_text("Replay of #3")
    await rows.nth(0).get_by_role("button", name="D1").click()
    await expect(page.locator("#detail-title")).to_contain_text("Message #5 · RAS^O17 · D1")
    await expect(page.locator("#alerts li")).to_have_count(1)
    await expect(page.locator("#alerts")).to_contain_text("baseline-workup")
    await expect(page.locator("#acks")).to_contain_text("MSA|AA|D1")
    await expect(page.locator("#changes")).to_contain_text("exposure")
    await expect(detail).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "replay.png"), full_page=True)

    baseline = await svc.store.list_alerts(rule="baseline-workup", patient=feed.PATIENT)
    assert len(baseline) == 1
    assert problems == []


async def test_a_manager_browses_but_cannot_replay(
    browser: Browser, site: tuple[Service, dict[str, str], Path]
) -> None:
    svc, tokens, _ = site
    page = await log_in(browser, svc, tokens["manager"], [])
    await expect(page.locator("#who-name")).to_have_text("manager-jo (manager)")
    await expect(page.locator("#results tbody tr")).to_have_count(4)
    await expect(page.locator("#replay-form")).to_be_hidden()
    reload = page.get_by_role("button", name="Reload knowledge and ingest settings")
    await expect(reload).to_be_hidden()
    # with the session's CSRF token, so that only the role can be what refuses it
    refused = await page.evaluate(
        "fetch('/api/messages/replay', {method: 'POST', headers: {'Content-Type':"
        " 'application/json', 'X-Lisguard-CSRF': csrf},"
        " body: JSON.stringify({ids: [3], reason: 'x'})})"
        ".then(async r => [r.status, await r.json()])"
    )
    assert refused[0] == 403 and "role 'manager' may not" in refused[1]["error"]
