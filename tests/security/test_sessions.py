"""Sessions, the cross-site checks, security headers, the login limiter and what POST /api/hl7
tells its sender, over real TCP against the running service (aiohttp client)."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.store.audit_search import AuditQuery
from lisguard.web.auth import new_token, token_hash
from tests.conftest import ServiceFactory
from tests.e2e.test_alert_api import DOSE, SCREEN

ROLES = ("technologist", "manager", "sender")
JSON = {"Content-Type": "application/json"}
PATIENTS = itertools.count(100)


@dataclass
class Bench:
    svc: Service
    tokens: dict[str, str]
    token_ids: dict[str, int]
    alert: str  # an open bb-serology alert

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.svc.http_port}"

    def bearer(self, role: str = "technologist") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def make_bench(
    factory: ServiceFactory, delivery: dict[str, Any] | None = None, **http: Any
) -> Bench:
    svc: Service = await factory(http={"auth_required": True, **http}, delivery=delivery or {})
    tokens, ids = {}, {}
    for role in ROLES:
        tokens[role] = new_token()
        made = await svc.store.access.add_token(
            role, role, token_hash(tokens[role]), by="t", at=datetime.now(UTC)
        )
        ids[role] = made.id
    bench = Bench(svc, tokens, ids, "")
    async with aiohttp.ClientSession() as http_:
        mrn = f"MRN9{next(PATIENTS)}"  # benches of one test share the database
        body = (DOSE + SCREEN).format(mrn=mrn, order="TS9", location="4W").encode()
        async with http_.post(
            f"{bench.base}/api/hl7",
            data=body,
            headers={"Accept": "application/json", **bench.bearer("sender")},
        ) as resp:
            assert resp.status == 200
            results = await resp.json()
    [bench.alert] = results[1]["alert_ids"]
    return bench


@pytest.fixture
async def bench(service_factory: ServiceFactory) -> Bench:
    return await make_bench(service_factory)


async def log_in(bench: Bench, role: str = "technologist") -> tuple[str, str]:
    """A new session: (session id from the cookie, its CSRF token)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bench.base}/api/login", json={"token": bench.tokens[role]}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
            cookie = r.cookies["lisguard_session"]
    assert cookie.value.startswith("ls_") and cookie.value != bench.tokens[role]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert body["csrf"] and body["role"] == role
    return cookie.value, str(body["csrf"])


async def call(
    bench: Bench, method: str, path: str, *, data: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    """One request with exactly these headers (no cookie jar): (status, JSON body, headers)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.request(method, bench.base + path, data=data, headers=headers) as r:
            text = await r.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = text
            return r.status, body, r.headers


def cookie(session_id: str) -> str:
    return f"lisguard_session={session_id}"


async def status_of(bench: Bench, alert: str) -> str:
    status, view, _ = await call(bench, "GET", f"/api/alerts/{alert}", **bench.bearer())
    assert status == 200
    return str(view["status"])


# ---------------------------------------------------------------- JSON only as JSON


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/alerts/{alert}/acknowledge", {"note": "x"}),
        ("/api/alerts/{alert}/resolve", {"resolution": "done"}),
        ("/api/alerts/{alert}/snooze", {"reason": "x", "hours": 1}),
        ("/api/snoozes", {"patient": "MRN100^HOSP", "rule": "bb-serology", "reason": "x"}),
    ],
)
async def test_a_text_plain_body_is_415(bench: Bench, path: str, body: dict[str, Any]) -> None:
    url = path.format(alert=bench.alert)
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, answer, _ = await call(
            bench, "POST", url, data=json.dumps(body), **bench.bearer(), **{"Content-Type": kind}
        )
        assert (status, answer["status"]) == (415, 415), kind
    assert await status_of(bench, bench.alert) == "open"


async def test_login_takes_json_only(bench: Bench) -> None:
    body = json.dumps({"token": bench.tokens["technologist"]})
    status, _, headers = await call(bench, "POST", "/api/login", data=body)  # octet-stream
    assert status == 415 and "Set-Cookie" not in headers
    status, _, headers = await call(
        bench, "POST", "/api/login", data=body, **{"Content-Type": "text/plain"}
    )
    assert status == 415 and "Set-Cookie" not in headers


# ---------------------------------------------------------------- cross-site checks


async def test_cookie_requests_need_own_origin_and_csrf_header(bench: Bench) -> None:
    sid, token = await log_in(bench)
    ack = f"/api/alerts/{bench.alert}/acknowledge"
    own = bench.base
    refused = [
        {},  # neither Origin nor Referer
        {"Origin": "http://127.0.0.1:1"},  # same site, other port
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": own},  # own origin, no CSRF header
        {"Origin": own, "X-Lisguard-CSRF": "forged"},
        {"Origin": "http://127.0.0.1:1", "X-Lisguard-CSRF": token},
        {"Origin": own, "X-Lisguard-CSRF": token[:-1] + ("B" if token[-1] == "A" else "A")},
    ]
    for headers in refused:
        status, body, _ = await call(
            bench, "POST", ack, data=b"{}", Cookie=cookie(sid), **JSON, **headers
        )
        assert status == 403 and "cross-site" in body["error"], headers
    assert await status_of(bench, bench.alert) == "open"
    # a GET needs neither: nothing changes
    status, me, _ = await call(bench, "GET", "/api/me", Cookie=cookie(sid))
    assert status == 200 and me["csrf"] == token and me["user"] == "technologist"
    # the Referer stands in for a missing Origin
    status, _, _ = await call(
        bench,
        "POST",
        f"/api/alerts/{bench.alert}/snooze",
        data=json.dumps({"reason": "r", "hours": 1}),
        Cookie=cookie(sid),
        Referer=f"{own}/",
        **{"X-Lisguard-CSRF": token},
        **JSON,
    )
    assert status == 201
    status, view, _ = await call(
        bench,
        "POST",
        f"/api/alerts/{bench.alert}/resolve",
        data=json.dumps({"resolution": "done"}),
        Cookie=cookie(sid),
        Origin=own,
        **{"X-Lisguard-CSRF": token},
        **JSON,
    )
    assert status == 200 and view["resolved"]["by"] == "technologist"


async def test_public_url_is_an_own_origin(service_factory: ServiceFactory) -> None:
    """Behind a proxy the browser names the public https address, not the Host lisguard sees."""
    bench = await make_bench(service_factory, {"public_url": "https://lis.example.org/lisguard"})
    sid, token = await log_in(bench)
    ack = f"/api/alerts/{bench.alert}/acknowledge"
    sent = {"Cookie": cookie(sid), "X-Lisguard-CSRF": token, **JSON}
    for origin in ("http://lis.example.org", "https://lis.example.org:8443", "https://evil.org"):
        status, _, _ = await call(bench, "POST", ack, data=b"{}", Origin=origin, **sent)
        assert status == 403, origin
    status, _, _ = await call(
        bench, "POST", ack, data=b"{}", Origin="https://LIS.example.org", **sent
    )
    assert status == 200


async def test_bearer_clients_need_no_origin(bench: Bench) -> None:
    status, view, _ = await call(
        bench,
        "POST",
        f"/api/alerts/{bench.alert}/acknowledge",
        data=json.dumps({"note": "from the LIS"}),
        **bench.bearer(),
        **JSON,
    )
    assert status == 200 and view["status"] == "acknowledged"


async def test_a_foreign_origin_cannot_log_in_or_act_without_auth(
    service_factory: ServiceFactory,
) -> None:
    bench = await make_bench(service_factory)
    body = json.dumps({"token": bench.tokens["technologist"]})
    status, _, headers = await call(
        bench, "POST", "/api/login", data=body, Origin="http://127.0.0.1:1", **JSON
    )
    assert status == 403 and "Set-Cookie" not in headers
    status, _, _ = await call(bench, "POST", "/api/login", data=body, Origin=bench.base, **JSON)
    assert status == 200
    # a closed bench with authentication off still refuses a foreign page
    open_bench: Service = await service_factory(http={"auth_required": False})
    url = f"http://127.0.0.1:{open_bench.http_port}/api/snoozes"
    snooze = json.dumps({"patient": "P^H", "rule": "bb-serology", "reason": "r", "hours": 1})
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, data=snooze, headers={"Origin": "http://127.0.0.1:1", **JSON}
        ) as resp:
            assert resp.status == 403
        async with http.post(url, data=snooze, headers=JSON) as resp:
            assert resp.status == 201


# ---------------------------------------------------------------- sessions end


async def test_logout_ends_the_session_on_the_server(bench: Bench) -> None:
    sid, token = await log_in(bench)
    # a cross-site logout is refused like any other act
    status, _, _ = await call(bench, "POST", "/api/logout", Cookie=cookie(sid), Origin=bench.base)
    assert status == 403
    assert (await call(bench, "GET", "/api/me", Cookie=cookie(sid)))[0] == 200
    status, _, headers = await call(
        bench,
        "POST",
        "/api/logout",
        Cookie=cookie(sid),
        Origin=bench.base,
        **{"X-Lisguard-CSRF": token},
    )
    assert status == 200 and 'lisguard_session=""' in headers["Set-Cookie"]
    # the old cookie, kept by someone, is worth nothing now
    status, body, headers = await call(bench, "GET", "/api/me", Cookie=cookie(sid))
    assert status == 401 and "ended" in body["error"]
    assert "lisguard_session" in headers["Set-Cookie"]  # cleared
    kinds = [e.event.kind for e in await bench.svc.store.access.search_audit(AuditQuery())]
    assert "auth.logout" in kinds and "auth.login" in kinds
    # an ended session is no failed login
    assert not await bench.svc.store.access.search_audit(AuditQuery(kinds=("auth.failed",)))


async def test_revoking_the_token_ends_its_sessions(bench: Bench) -> None:
    first, _ = await log_in(bench)
    second, _ = await log_in(bench)
    other, _ = await log_in(bench, "manager")
    assert await bench.svc.store.access.revoke_token(
        bench.token_ids["technologist"], by="admin", at=datetime.now(UTC)
    )
    for sid in (first, second):
        assert (await call(bench, "GET", "/api/me", Cookie=cookie(sid)))[0] == 401
    assert (await call(bench, "GET", "/api/me", Cookie=cookie(other)))[0] == 200
    [revoked] = await bench.svc.store.access.search_audit(AuditQuery(kinds=("token.revoked",)))
    assert revoked.event.detail == {"sessions_ended": 2}


async def test_idle_and_absolute_limits(service_factory: ServiceFactory) -> None:
    idle = await make_bench(service_factory, session_idle_minutes=0.5 / 60)
    sid, _ = await log_in(idle)
    assert (await call(idle, "GET", "/api/me", Cookie=cookie(sid)))[0] == 200
    await asyncio.sleep(0.8)
    status, body, _ = await call(idle, "GET", "/api/me", Cookie=cookie(sid))
    assert status == 401 and "ended" in body["error"]

    short = await make_bench(service_factory, session_lifetime_hours=0.6 / 3600)
    sid, _ = await log_in(short)
    for _ in range(3):  # in use all along: the absolute end comes all the same
        await asyncio.sleep(0.3)
        last = (await call(short, "GET", "/api/me", Cookie=cookie(sid)))[0]
    assert last == 401


async def test_garbage_and_token_cookies_are_not_sessions(bench: Bench) -> None:
    for value in ("ls_" + "A" * 43, bench.tokens["technologist"], "x"):
        status, _, _ = await call(bench, "GET", "/api/me", Cookie=cookie(value))
        assert status == 401, value
    # the old cookie that held the API token itself no longer logs anyone in
    jar = f"lisguard_token={bench.tokens['technologist']}"
    assert (await call(bench, "GET", "/api/me", Cookie=jar))[0] == 401


# ---------------------------------------------------------------- limiter and HL7 answer


async def test_failures_of_others_never_lock_out_a_valid_credential(bench: Bench) -> None:
    sid, _ = await log_in(bench)
    wrong = {"Authorization": "Bearer lg_wrong"}
    statuses = [(await call(bench, "GET", "/api/alerts", **wrong))[0] for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    # the same address, right after: a valid token, a live session, a login all pass
    assert (await call(bench, "GET", "/api/alerts", **bench.bearer()))[0] == 200
    assert (await call(bench, "GET", "/api/alerts", Cookie=cookie(sid)))[0] == 200
    body = json.dumps({"token": bench.tokens["manager"]})
    assert (await call(bench, "POST", "/api/login", data=body, **JSON))[0] == 200
    status, _, headers = await call(bench, "GET", "/api/alerts", **wrong)
    assert status == 429 and int(headers["Retry-After"]) > 0
    failed = await bench.svc.store.access.search_audit(AuditQuery(kinds=("auth.failed",)))
    assert len(failed) == 10  # refusals past the limit are not logged again


async def test_hl7_answer_holds_no_alert_text(bench: Bench) -> None:
    message = (DOSE + SCREEN).format(mrn="MRN901", order="TS8", location="ONC")
    status, results, _ = await call(
        bench,
        "POST",
        "/api/hl7",
        data=message.encode(),
        Accept="application/json",
        **bench.bearer("sender"),
    )
    assert status == 200
    text = json.dumps(results)
    for result in results:
        assert set(result) == {
            "control_id",
            "message_type",
            "outcome",
            "ack_code",
            "acks",
            "error",
            "alert_count",
            "alert_ids",
        }
        assert result["alert_count"] == len(result["alert_ids"]) == 1
        assert "MSA|AA|" in result["acks"][0]
        _, view, _ = await call(
            bench, "GET", f"/api/alerts/{result['alert_ids'][0]}", **bench.bearer()
        )
        alert = view["alert"]
        for secret in (alert["text"], *alert["recommendations"], alert["rule"], "DOE", "JANE"):
            assert secret not in text
    # the ER7 answer is the ACKs and nothing else
    status, ack, _ = await call(
        bench,
        "POST",
        "/api/hl7",
        data=message.replace("MRN901", "MRN902").encode(),
        **bench.bearer("sender"),
    )
    segments = [s[:3] for s in ack.split("\r") if s]
    assert status == 200 and set(segments) <= {"MSH", "MSA", "ERR"}
