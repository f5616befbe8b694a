"""The validation report as a lab manager opens it: a file:// page in Chromium, nothing fetched,
every section there, the charts drawn, the samples with their review boxes, the sign-off block.
Screenshot (full page): test-artifacts/validation-report.png; printed: validation-report.pdf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import CORPUS, SAMPLES
from tests.integration.test_validate_site_file import local_feed

pytestmark = pytest.mark.browser
BIN = str(Path(sys.executable).parent / "lisguard")


def _report(tmp_path: Path) -> Path:
    feeds = [str(SAMPLES), str(local_feed(tmp_path / "feed"))]
    if CORPUS.is_dir():
        feeds.append(str(CORPUS))
    out = tmp_path / "report"
    proc = subprocess.run(
        [BIN, "validate", *feeds, "--out", str(out), "--sample", "3", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out / "report.html"


async def test_report_renders_offline_with_its_sections_and_charts(
    browser: Browser, tmp_path: Path
) -> None:
    html = _report(tmp_path)
    fetched: list[str] = []
    problems: list[str] = []
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.on("request", lambda r: fetched.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(html.as_uri())

    await expect(page.locator("h1")).to_have_text("Validation report")
    for section, heading in (
        ("volume", "1. Volume"),
        ("alerts", "2. Alerts"),
        ("samples", "3. Alerts to review"),
        ("unmapped", "4. Unmapped candidates"),
        ("codes", "5. Top test codes"),
        ("problems", "6. Unreadable and refused messages"),
        ("signoff", "7. Sign-off"),
    ):
        await expect(page.locator(f"#{section} h2")).to_have_text(heading)
    # the charts are drawn: per day, per type, per rule, each with bars of a real size
    charts = page.locator("svg.chart")
    assert await charts.count() == 3
    for i in range(3):
        box = await charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 100
        assert await charts.nth(i).locator("rect").count() > 3
    day_bar = page.locator("#volume svg.chart rect").first
    assert ": " in (await day_bar.locator("title").text_content() or "")
    # three samples a rule, each with its evidence and its review boxes
    samples = page.locator("article.sample")
    assert await samples.count() >= 9
    first = samples.first
    await expect(first.locator("input[type=checkbox]")).to_have_count(2)
    await expect(first.locator("pre")).to_contain_text("MSH|")
    await expect(first.locator("pre")).not_to_contain_text("PID|")
    # the candidates of the local-code feed with their snippets, and the whole site file
    unmapped = page.locator("#unmapped")
    await expect(unmapped).to_contain_text("BB PREOP PANEL")
    await expect(unmapped).to_contain_text("DARATUMU 16MG/KG IVPB")
    await expect(page.locator("#site-file")).to_contain_text('- "RX88123"')
    await expect(page.locator("#codes")).to_contain_text("unmapped")
    await expect(page.locator("#problems")).to_contain_text("MSH-11 processing id 'T'")
    sign = page.locator("#signoff")
    for words in ("Knowledge base", "SHA-256", "Medical director", "Reviewer", "Signature"):
        await expect(sign).to_contain_text(words)
    await expect(sign.locator("table").nth(2)).to_contain_text("01-pharmacy.hl7")

    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    assert problems == []
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "validation-report.png"), full_page=True)
    await page.emulate_media(media="print")
    await page.pdf(path=str(ARTIFACTS / "validation-report.pdf"), format="A4")
