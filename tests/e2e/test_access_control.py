"""Every HTTP route, every role: exactly what it may, 401/403 otherwise (issue 5)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.store.audit_search import AuditQuery
from lisguard.web.auth import (
    AUTH,
    INCLUDES,
    PUBLIC,
    ROUTE_ROLES,
    allowed,
    new_token,
    token_hash,
)
from tests.conftest import ServiceFactory

ROLES = ["technologist", "manager", "admin", "sender", "metrics"]


@pytest.fixture
async def secured(service_factory: ServiceFactory) -> tuple[Service, dict[str, str]]:
    svc: Service = await service_factory(http={"auth_required": True})
    tokens: dict[str, str] = {}
    now = datetime.now(UTC)
    for role in ROLES:
        tokens[role] = new_token()
        await svc.store.access.add_token(role, role, token_hash(tokens[role]), by="t", at=now)
    tokens["revoked"] = new_token()
    gone = await svc.store.access.add_token(
        "gone", "admin", token_hash(tokens["revoked"]), by="t", at=now
    )
    await svc.store.access.revoke_token(gone.id, by="t", at=now)
    return svc, tokens


def routes(svc: Service) -> list[tuple[str, str]]:
    assert svc.http is not None
    found = set()
    for route in svc.http.app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


async def test_every_api_route_has_a_role(secured: tuple[Service, dict[str, str]]) -> None:
    svc, _ = secured
    for method, path in routes(svc):
        if path.startswith("/api/") or path in ("/metrics",):
            assert (method, path) in ROUTE_ROLES, f"{method} {path} has no role in ROUTE_ROLES"


async def test_each_role_gets_exactly_what_it_may(secured: tuple[Service, dict[str, str]]) -> None:
    svc, tokens = secured
    assert svc.http is not None
    # each route's revoked-token try is a failed login: more routes than the login limit allows
    svc.http.app[AUTH].limiter.max_failures = 10_000
    base = f"http://127.0.0.1:{svc.http_port}"
    checked = 0
    async with aiohttp.ClientSession() as http:
        for method, path in routes(svc):
            needed = ROUTE_ROLES.get((method, path))
            if needed is None:
                continue  # pages and static files: public shells (test above covers the API)
            url = base + concrete(path)
            for who in [None, *ROLES, "revoked"]:
                headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
                async with http.request(method, url, headers=headers, data=b"{}") as resp:
                    status = resp.status
                checked += 1
                if needed == PUBLIC:
                    assert status not in (401, 403), (method, path, who, status)
                elif who is None or who == "revoked":
                    assert status == 401, (method, path, who, status)
                elif allowed(who, needed):
                    assert status not in (401, 403), (method, path, who, status)
                else:
                    assert status == 403, (method, path, who, status)
    assert checked >= 6 * len(ROUTE_ROLES) - 6


async def test_roles_nest_as_documented() -> None:
    assert INCLUDES["admin"] > INCLUDES["manager"] > INCLUDES["technologist"]
    assert not allowed("sender", "technologist")
    assert allowed("sender", "sender") and allowed("admin", "sender")
    assert not allowed("technologist", "sender")


async def test_login_opens_a_session_and_failures_are_audited_and_limited(
    secured: tuple[Service, dict[str, str]],
) -> None:
    svc, tokens = secured
    base = f"http://127.0.0.1:{svc.http_port}"
    # unsafe=True: aiohttp's client keeps no cookies for bare IP addresses otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/api/login", json={"token": tokens["manager"]}) as resp:
            assert resp.status == 200
            assert (await resp.json())["role"] == "manager"
        async with http.get(f"{base}/api/me") as resp:  # the cookie now identifies us
            assert resp.status == 200
            assert (await resp.json())["user"] == "manager"
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(12):
            async with http.post(f"{base}/api/login", json={"token": "lg_wrong"}) as resp:
                statuses.append(resp.status)
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429, 429]
        async with http.post(f"{base}/api/login", json={"token": "lg_wrong"}) as resp:
            assert int(resp.headers["Retry-After"]) > 0
        # a valid token is checked first: someone else's failures never lock it out
        async with http.post(f"{base}/api/login", json={"token": tokens["admin"]}) as resp:
            assert resp.status == 200
    failed = await svc.store.access.search_audit(AuditQuery(kinds=("auth.failed",)))
    assert len(failed) == 10


async def test_sender_may_post_hl7_only(secured: tuple[Service, dict[str, str]]) -> None:
    svc, tokens = secured
    base = f"http://127.0.0.1:{svc.http_port}"
    msg = "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|S1|P|2.5\rPID|1||9\r"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {tokens['sender']}"}
        async with http.post(f"{base}/api/hl7", data=msg.encode(), headers=headers) as resp:
            assert resp.status == 200
            assert "MSA|AA|S1" in await resp.text()
        async with http.get(f"{base}/metrics", headers=headers) as resp:
            assert resp.status == 403
