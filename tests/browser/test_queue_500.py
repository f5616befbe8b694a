"""The technologist page with 500 open alerts (issue 16 item 3): sent through the real ingest
path (POST /api/hl7), the page shows its first 50 in triage order, "Show more" pages through all
of them in the API's order without a repeat, and a live alert still lands on top. The page's
first render and the API's page times are printed, never asserted. Screenshot:
test-artifacts/triage-500.png."""

from __future__ import annotations

import time

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from lisguard.app import Service
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.browser.test_audience_page import send
from tests.e2e import triage_feed as feed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TESTS = [feed.CROSSMATCH, feed.ANTIBODY_SCREEN, feed.SPEP, feed.TYPE_AND_SCREEN]


def feed_of_500() -> list[str]:
    """250 patients: a first dose each (200 within the week: in the queue; 50 older: the
    background) and one test ordered on it: 500 alerts."""
    messages = []
    for i in range(250):
        mrn = f"MRN5{i:03}"
        name = f"PATIENT{i:03}^TEST"
        days = 1 + i % 5 if i < 200 else 10 + i % 30
        messages.append(feed.dose(mrn, feed.ago(days=days, minutes=i), name=name))
        test = TESTS[i % len(TESTS)]
        messages.append(feed.order(mrn, f"O5{i:03}", test, feed.ago(minutes=3 * i), name=name))
    return messages


async def test_500_open_alerts(browser: Browser, service: Service) -> None:
    base = f"http://127.0.0.1:{service.http_port}"
    async with aiohttp.ClientSession(base) as http:
        messages = feed_of_500()
        for start in range(0, len(messages), 100):
            body = "".join(messages[start : start + 100]).encode()
            async with http.post("/api/hl7", data=body) as resp:
                assert resp.status == 200
        counts = await service.store.desk.counts()
        assert counts.get("open") == 500

        started = time.perf_counter()
        async with http.get("/api/alerts", params={"section": "queue", "limit": "50"}) as resp:
            first = await resp.json()
        first_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        cursor = first["next_cursor"]
        async with http.get(
            "/api/alerts", params={"section": "queue", "limit": "50", "cursor": cursor}
        ) as resp:
            second = await resp.json()
        second_ms = (time.perf_counter() - started) * 1000
        async with http.get("/api/alerts", params={"section": "queue", "limit": "500"}) as resp:
            everything = await resp.json()
    print(
        f"\nAPI GET /api/alerts?section=queue&limit=50: first page {first_ms:.0f} ms,"
        f" next page (cursor) {second_ms:.0f} ms; {first['total']} in the queue"
    )
    assert first["total"] == 450 and second["count"] == 50
    in_order = [v["id"] for v in everything["alerts"]]
    assert len(in_order) == 450

    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    started = time.perf_counter()
    await page.goto(base + "/")
    cards = page.locator("#queue article.alert")
    await expect(cards).to_have_count(50)
    shown_ms = (time.perf_counter() - started) * 1000
    rendered = await page.evaluate(
        "performance.getEntriesByName('lisguard-queue-rendered')[0].startTime"
    )
    print(
        f"page: first render {rendered:.0f} ms after navigation start;"
        f" 50 cards visible {shown_ms:.0f} ms after goto"
    )
    await expect(page.locator("#queue-summary")).to_contain_text("50 of 450 alerts")
    await expect(page.locator("#background-count")).to_have_text("50")
    # the first patient's baseline work-up is on a later page: the header says so
    top = page.locator("#queue .patient-group").first
    await expect(top.locator(".ids")).to_contain_text("MRN5000")
    await expect(top.locator(".group-count")).to_have_text("1 of 2 alerts shown")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "triage-500.png"))

    # the page's order is the API's, grouped per patient
    more = page.locator("#queue-more button")
    await expect(more).to_have_text("Show 50 more (50 of 450 shown)")
    started = time.perf_counter()
    await more.click()
    await expect(cards).to_have_count(100)
    print(f"page: 'Show 50 more' to 100 cards {(time.perf_counter() - started) * 1000:.0f} ms")
    while await more.is_visible():
        count = await cards.count()
        await more.click()
        await expect(cards).not_to_have_count(count)
    await expect(cards).to_have_count(450)
    await expect(top.locator(".group-count")).to_have_text("2 alerts")
    shown = await cards.evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(set(shown)) == 450
    assert sorted(shown) == sorted(in_order)
    patients = [v["patient_key"] for v in everything["alerts"]]
    grouped = sorted(everything["alerts"], key=lambda v: patients.index(v["patient_key"]))
    assert shown == [v["id"] for v in grouped]

    # live, with 500 on the page: a crossmatch just ordered heads the queue
    await send(
        service,
        feed.dose("MRN-LIVE", feed.ago(days=3)),
        feed.order("MRN-LIVE", "O-LIVE", feed.CROSSMATCH, feed.ago(minutes=0)),
    )
    first_group = page.locator("#queue .patient-group").first
    await expect(first_group.locator(".ids")).to_contain_text("MRN-LIVE")
    await expect(first_group.locator(".transfusion")).to_have_text("Crossmatch ordered")
