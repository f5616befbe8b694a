"""Browser sessions: what POST /api/login opens and the pages' cookie carries.

- The cookie `lisguard_session` (HttpOnly, SameSite=Strict, path /, Secure as
  `http.secure_cookies` says) holds a random session id, `ls_` + 43 URL-safe characters. The
  store keeps only its SHA-256, linked to the API token that opened it (lisguard.store.access):
  logging out ends the session on the server, revoking the token ends all of its sessions, and
  the token itself never sits in a browser's cookie jar. The cookie has no Max-Age: the browser
  drops it when it closes, the server enforces the limits below.
- A session ends after `http.session_idle_minutes` (30) without a request and at the latest
  `http.session_lifetime_hours` (12, a long bench shift) after login. The open technologist page
  refreshes its queue every minute, so a page left open on the bench stays logged in for the
  shift; a closed tab or a browser someone walked away from does not.
- The CSRF token the pages send back in X-Lisguard-CSRF (lisguard.web.csrf) is an HMAC of the
  session id: it needs no storage, cannot be turned back into the id, and ends with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from lisguard.settings import HttpSettings

SESSION_COOKIE = "lisguard_session"
LEGACY_COOKIE = "lisguard_token"  # before sessions, the cookie held the API token itself
SESSION_PREFIX = "ls_"
# last use is written at most this often per session: not a database write per request
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionRules:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)
    secure_cookies: bool | None = None  # None: Secure when the request came over TLS

    @classmethod
    def from_settings(cls, http: HttpSettings) -> SessionRules:
        return cls(
            idle=timedelta(minutes=http.session_idle_minutes),
            lifetime=timedelta(hours=http.session_lifetime_hours),
            secure_cookies=http.secure_cookies,
        )

    def secure(self, request: web.BaseRequest) -> bool:
        return request.secure if self.secure_cookies is None else self.secure_cookies


def new_session_id() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_token(session_id: str) -> str:
    mac = hmac.new(session_id.encode("utf-8"), b"lisguard-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def presented_session(request: web.Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def holds_cookie(request: web.Request) -> bool:
    return SESSION_COOKIE in request.cookies or LEGACY_COOKIE in request.cookies


def set_cookie(
    response: web.StreamResponse, request: web.Request, rules: SessionRules, session_id: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=rules.secure(request),
        path="/",
    )
    if LEGACY_COOKIE in request.cookies:  # an API token left in the jar by an older version
        response.del_cookie(LEGACY_COOKIE, path="/")


def clear_cookies(response: web.StreamResponse, request: web.Request) -> None:
    for name in (SESSION_COOKIE, LEGACY_COOKIE):
        if name in request.cookies:
            response.del_cookie(name, path="/")
