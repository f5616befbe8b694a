"""Cross-site request forgery: which requests may act with the browser's session cookie.

SameSite=Strict does not stop a page of the same *site* (another port of the host, a sibling
subdomain), and a text/plain form or a fetch(no-cors) needs no CORS preflight. So:

1. An unsafe request (POST, PUT, PATCH, DELETE) carried by the session cookie must name the
   service's own origin in Origin, or in Referer when the browser sent no Origin; with neither
   it is refused. Own origin: the request's scheme and Host header, or delivery.public_url (set
   that behind a proxy that terminates TLS or rewrites Host).
2. It must also carry `X-Lisguard-CSRF` with the session's token (lisguard.web.sessions; the
   pages get it from POST /api/login and GET /api/me). A cross-origin page can neither read
   the token nor set a custom header without a preflight, which lisguard never grants.
3. JSON bodies are read only as `Content-Type: application/json` (415 otherwise): a content type
   a cross-origin "simple" request cannot have (`require_json`, used by every JSON route).

Bearer-token clients skip 1 and 2: a browser never adds that header by itself. Unsafe requests
without a session (login, a bench with authentication off) that name a foreign origin are
refused too; without Origin and Referer they pass (curl, API clients).
"""

from __future__ import annotations

import hmac

from aiohttp import web
from yarl import URL

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-Lisguard-CSRF"
JSON = "application/json"

Origin = tuple[str, str, int]


def refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def origin_of(text: str) -> Origin | None:
    """(scheme, host, port) of an origin or URL; None for "null" and anything not http(s)."""
    try:
        url = URL(text.strip())
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.port is None:
        return None
    return url.scheme, url.host.lower(), url.port


def own_origins(request: web.Request, public_url: str) -> set[Origin]:
    found = {origin_of(f"{request.scheme}://{request.host}"), origin_of(public_url)}
    return {o for o in found if o is not None}


def _sender(request: web.Request) -> str | None:
    """What the browser says the request comes from: Origin, else Referer, else None."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin
    return request.headers.get("Referer")


def check_origin(request: web.Request, public_url: str, *, required: bool) -> web.Response | None:
    """403 when an unsafe request comes from another origin (or, `required`, says nothing)."""
    if request.method not in UNSAFE:
        return None
    sender = _sender(request)
    if sender is None:
        if required:
            return refuse(403, "cross-site check: the browser sent neither Origin nor Referer")
        return None
    if origin_of(sender) not in own_origins(request, public_url):
        return refuse(403, "cross-site check: the request comes from another origin")
    return None


def check_token(request: web.Request, expected: str) -> web.Response | None:
    """403 unless an unsafe request carries the session's CSRF token."""
    if request.method not in UNSAFE:
        return None
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode()):
        return refuse(403, f"cross-site check: send the session's {CSRF_HEADER} header")
    return None


def wrong_body_type(request: web.Request, raw: bytes) -> bool:
    """A body not declared as JSON. An empty body is no body, whatever its declared type
    (clients send `POST` without one as application/octet-stream): nothing is parsed."""
    return bool(raw.strip()) and request.content_type != JSON


def require_json(request: web.Request, raw: bytes) -> web.Response | None:
    if wrong_body_type(request, raw):
        return refuse(415, f"send the body as JSON with Content-Type: {JSON}")
    return None
