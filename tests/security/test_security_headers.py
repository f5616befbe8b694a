"""Security headers on every response (lisguard.web.headers), and the Secure cookie and HSTS
behind a TLS-terminating proxy, over real TCP."""

from __future__ import annotations

import aiohttp

from tests.conftest import ServiceFactory
from tests.security.test_sessions import Bench, bench, call, cookie, log_in, make_bench

__all__ = ["bench"]  # the fixture, shared with test_sessions


async def test_security_headers_everywhere(bench: Bench) -> None:
    sid, _ = await log_in(bench)
    for path, who in [
        ("/", {}),
        ("/manager", {}),
        ("/static/app.js", {}),
        ("/api/alerts", bench.bearer()),
        ("/api/me", {"Cookie": cookie(sid)}),
        ("/api/alerts", {}),  # a 401
        ("/api/nope", bench.bearer()),  # a 403
        ("/nope", {}),  # a 404
        ("/healthz", {}),
    ]:
        _, _, headers = await call(bench, "GET", path, **who)
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
        assert "script-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert "Strict-Transport-Security" not in headers, path  # plain HTTP, no proxy said
        if path.startswith("/api/"):
            assert headers["Cache-Control"] == "no-store", path
    _, _, headers = await call(bench, "GET", "/")
    assert headers["Cache-Control"] == "no-cache"  # the page's own value is kept


async def test_behind_a_tls_proxy_cookies_are_secure_and_hsts_is_sent(
    service_factory: ServiceFactory,
) -> None:
    bench = await make_bench(service_factory, secure_cookies=True)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{bench.base}/api/login", json={"token": bench.tokens["technologist"]}
        ) as resp:
            assert resp.status == 200
            assert resp.cookies["lisguard_session"]["secure"]
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
