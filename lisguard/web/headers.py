"""Security headers on every HTTP response: pages, static files, the API, errors.

Set by a response-prepare hook rather than a middleware so that streamed responses (live events,
audit exports), static files and the errors aiohttp answers itself get them too. A value a
handler set on purpose is kept.

- The pages load only their own scripts and style sheets, and none may be framed: the queue's
  buttons must not be clickable through someone else's page (frame-ancestors, X-Frame-Options).
- API answers hold patient data: never cached (Cache-Control: no-store), never readable by a
  cross-origin page through <script> or <img> (Cross-Origin-Resource-Policy).
- HSTS only where HTTPS is certain: the request came over TLS, or `http.secure_cookies` says a
  TLS-terminating proxy is in front.
"""

from __future__ import annotations

from aiohttp import web

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts of the domain are not ours


def install(app: web.Application, *, secure_cookies: bool | None = None) -> None:
    async def add_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.secure or secure_cookies:
            response.headers.setdefault("Strict-Transport-Security", HSTS)

    app.on_response_prepare.append(add_headers)
