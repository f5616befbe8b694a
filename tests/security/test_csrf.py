"""The cross-site attack from the security review, in a real browser (Playwright driving Debian's
Chromium): a technologist logs in on the real page, then a page served from another origin of
the same host - another port of 127.0.0.1, which Chromium counts as the same *site*, so the
SameSite=Strict session cookie goes along - tries to acknowledge and resolve alerts with
fetch(no-cors) and text/plain form posts. The alerts must stay as they were; the real page must
still act. Leaves test-artifacts/security-technologist-logged-in.png."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Request, expect

from lisguard.app import Service
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.transport.mllp import MllpClient, msa_code
from lisguard.web import csrf
from lisguard.web.auth import new_token, token_hash
from tests.browser.conftest import ARTIFACTS, WAIT_MS
from tests.conftest import SAMPLES, ServiceFactory

pytestmark = pytest.mark.browser

FEED = SAMPLES / "03-rxa-then-type-and-screen"
SAFETY = 30.0  # never an assertion: a hung test fails instead of blocking the suite

ATTACK = """<!doctype html>
<html><head><title>cat pictures</title></head><body>
<iframe name="f-ack"></iframe><iframe name="f-res"></iframe>
<form id="ack" method="POST" enctype="text/plain" target="f-ack"
      action="{base}/api/alerts/{first}/acknowledge">
  <input name='{{"note":"' value='csrf"}}'>
</form>
<form id="res" method="POST" enctype="text/plain" target="f-res"
      action="{base}/api/alerts/{first}/resolve">
  <input name='{{"resolution":"done","reason":"' value='csrf"}}'>
</form>
<script>
(async () => {{
  const base = {base_js};
  const shot = (path, body) => fetch(base + path, {{
    method: "POST", mode: "no-cors", credentials: "include", body,
  }});
  const shots = [];
  for (const id of {ids_js}) {{
    shots.push(shot(`/api/alerts/${{id}}/acknowledge`, '{{"note":"csrf"}}'));
    shots.push(shot(`/api/alerts/${{id}}/resolve`, '{{"resolution":"done"}}'));
    shots.push(shot(`/api/alerts/${{id}}/resolve`, undefined));  // no body at all
  }}
  await Promise.allSettled(shots);
  document.getElementById("ack").submit();
  document.getElementById("res").submit();
  document.title = "fired";
}})();
</script>
</body></html>
"""


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[dict[str, str], int]]:
    """A second HTTP server on another port of 127.0.0.1: serves whatever `pages` holds."""
    pages: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=pages.get(request.path, ""), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield pages, int(port)
    finally:
        await runner.cleanup()


def spy_on_cross_site_checks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the service's origin check saw of each unsafe request: `session` is True when the
    request came with the cookie of a live session (only then is the check `required`)."""
    seen: list[dict[str, Any]] = []
    original = csrf.check_origin

    def check(request: web.Request, public_url: str, *, required: bool) -> web.Response | None:
        if request.method in csrf.UNSAFE:
            seen.append(
                {
                    "path": request.path,
                    "origin": request.headers.get("Origin"),
                    "session": required and "lisguard_session" in request.cookies,
                }
            )
        return original(request, public_url, required=required)

    monkeypatch.setattr(csrf, "check_origin", check)
    return seen


async def alert_view(svc: Service, token: str, alert_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{svc.http_port}/api/alerts/{alert_id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == 200
            view: dict[str, Any] = await resp.json()
    return view


async def test_another_origin_cannot_act_with_the_session_cookie(
    browser: Browser,
    service_factory: ServiceFactory,
    attacker: tuple[dict[str, str], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc: Service = await service_factory(http={"auth_required": True})
    seen = spy_on_cross_site_checks(monkeypatch)
    token = new_token()
    at = datetime.now(UTC)
    await svc.store.access.add_token("jsmith", "technologist", token_hash(token), by="t", at=at)
    assert svc.mllp_port
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        for path in sorted(FEED.glob("*.hl7")):
            for text in split_messages(decode_bytes(path.read_bytes())):
                assert msa_code(await client.send(text.encode())) in ("AA", "CA")
    ids = sorted(r.alert.id for r in await svc.store.list_alerts())
    assert ids
    assert [(await alert_view(svc, token, i))["status"] for i in ids] == ["open"] * len(ids)
    base = f"http://127.0.0.1:{svc.http_port}"

    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        problems: list[str] = []  # script errors and Content-Security-Policy refusals
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(f"{base}/")
        await expect(page.locator("#login")).to_be_visible()
        await page.fill("#login-token", token)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#user")).to_have_text("jsmith")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        cookies = {c["name"]: c for c in await context.cookies(base)}
        session = cookies["lisguard_session"]
        assert session["value"] != token and session["httpOnly"] and session["sameSite"] == "Strict"

        pages, port = attacker
        pages["/cats"] = ATTACK.format(
            base=base, first=ids[0], base_js=json.dumps(base), ids_js=json.dumps(ids)
        )
        sent: list[Request] = []
        done: list[Request] = []
        evil = await context.new_page()
        evil.on("request", lambda r: sent.append(r) if r.url.startswith(base) else None)
        for event in ("requestfinished", "requestfailed"):
            evil.on(event, lambda r: done.append(r) if r.url.startswith(base) else None)
        seen.clear()  # the login
        await evil.goto(f"http://127.0.0.1:{port}/cats")
        await expect(evil).to_have_title("fired")
        expected = 3 * len(ids) + 2  # the fetches and the two forms
        async with asyncio.timeout(SAFETY):
            while len(done) < expected:
                await asyncio.sleep(0.05)
        assert len(sent) == expected

        for alert_id in ids:
            view = await alert_view(svc, token, alert_id)
            assert view["status"] == "open", (alert_id, view)
            assert view["acknowledged"] is None and view["resolved"] is None

        # the attack was live: same site, so every request arrived with the session cookie of
        # a live session, from the other origin - and only the cross-site check refused it
        assert sorted((c["path"], c["origin"], c["session"]) for c in seen) == sorted(
            (r.url[len(base) :], f"http://127.0.0.1:{port}", True) for r in sent
        )
        statuses = set()
        for request in sent:
            response = await request.response()
            statuses.add(response.status if response is not None else None)
        assert statuses <= {403, None}  # an opaque no-cors answer may go unreported

        # the real page, same session, still acts (it sends X-Lisguard-CSRF)
        [screen] = await svc.store.list_alerts(rule="bb-serology")
        card = page.locator(f'article[data-id="{screen.alert.id}"]')
        await card.get_by_role("button", name="Acknowledge").click()
        await page.fill("#ack-note", "DTT cells requested")
        await page.click("#ack-confirm")
        await expect(card.locator(".state")).to_contain_text("Acknowledged by jsmith")
        assert (await alert_view(svc, token, screen.alert.id))["status"] == "acknowledged"
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(
            path=str(ARTIFACTS / "security-technologist-logged-in.png"), full_page=True
        )

        # logging out on the page ends the session on the server
        await page.get_by_role("button", name="Log out").click()
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.get_by_role("button", name="Log out")).to_be_hidden()
        await page.screenshot(path=str(ARTIFACTS / "security-technologist-logged-out.png"))
        # the only errors: the 401s of the page asking who is logged in before and after
        assert all("status of 401" in p for p in problems), problems
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{base}/api/me", headers={"Cookie": f"lisguard_session={session['value']}"}
            ) as resp:
                assert resp.status == 401
    finally:
        await context.close()
