"""Who may do what over HTTP: API tokens with roles, checked on every route.

Roles (issue 5): `technologist` reads alerts and patients and acts on alerts; `manager` also reads
the audit log and reports; `admin` also manages tokens and configuration; `sender` may only post
HL7; `metrics` may only read /metrics (a Prometheus scraper's token; managers and admins may
too). A route not listed in ROUTE_ROLES is refused to everyone (default deny), so a new route
cannot be exposed by accident: the table-driven test walks every registered route.

A token is `lg_` + 43 random URL-safe characters, shown once by `lisguard token create`; the store
keeps its SHA-256. API clients send `Authorization: Bearer <token>`. Browsers log in once
(POST /api/login with the token) and get a session cookie that holds a session id, never the
token (lisguard.web.sessions); their unsafe requests must pass the cross-site checks
(lisguard.web.csrf). Failed logins are audited and counted per client address; past the limit
the address is refused (429) - but only what is not valid: the credential is checked first, so a
good token from a bench behind the same NAT is never locked out by someone else's failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from aiohttp import web

from lisguard.settings import HttpSettings
from lisguard.store.access import ApiToken, Session
from lisguard.store.base import AuditEvent, Store
from lisguard.web import csrf, headers, sessions
from lisguard.web.sessions import SessionRules

log = structlog.get_logger("lisguard.auth")

TOKEN_PREFIX = "lg_"
# what each role may do beyond the roles it includes
INCLUDES: dict[str, frozenset[str]] = {
    "technologist": frozenset({"technologist"}),
    "manager": frozenset({"technologist", "manager", "metrics"}),
    "admin": frozenset({"technologist", "manager", "admin", "metrics"}),
    "sender": frozenset({"sender"}),
    "metrics": frozenset({"metrics"}),  # a scraper: GET /metrics only
}
PUBLIC = "public"

# (method, path pattern) -> the role needed. Patterns are aiohttp resource canonical paths.
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,  # probes
    ("GET", "/readyz"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/logout"): PUBLIC,
    ("GET", "/api/session"): PUBLIC,  # whether to show the page or the login: never a 401
    ("GET", "/api/openapi.json"): PUBLIC,
    ("POST", "/api/hl7"): "sender",
    ("GET", "/metrics"): "metrics",
    ("GET", "/api/me"): "technologist",
    # the manager view (lisguard.web.audit_api): audit search, export, chain check, reports
    ("GET", "/api/audit"): "manager",
    ("GET", "/api/audit/export"): "manager",
    ("GET", "/api/audit/verify"): "manager",
    ("GET", "/api/reports/daily"): "manager",
    # the message browser (lisguard.web.messages_api): reads audited there as phi.read;
    # replaying messages and reloading the knowledge change what lisguard knows: admins only
    ("GET", "/api/messages"): "manager",
    ("GET", "/api/messages/{message_id}"): "manager",
    ("POST", "/api/messages/replay"): "admin",
    ("GET", "/api/knowledge"): "manager",
    ("POST", "/api/admin/knowledge/reload"): "admin",
    # the technologist page's API (lisguard.web.routes, issue 4): queue, actions, patients,
    # snoozes, live events
    ("GET", "/api/meta"): "technologist",
    ("GET", "/api/events"): "technologist",
    ("GET", "/api/alerts"): "technologist",
    ("GET", "/api/alerts/{alert_id}"): "technologist",
    ("POST", "/api/alerts/{alert_id}/acknowledge"): "technologist",
    ("POST", "/api/alerts/{alert_id}/resolve"): "technologist",
    ("POST", "/api/alerts/{alert_id}/snooze"): "technologist",
    ("GET", "/api/patients/{patient_key}"): "technologist",
    ("GET", "/api/snoozes"): "technologist",
    ("POST", "/api/snoozes"): "technologist",
    ("DELETE", "/api/snoozes/{snooze_id}"): "technologist",
    # the escalation banner on every page (lisguard.web.escalation_api; names no patient)
    ("GET", "/api/escalations"): "technologist",
    # print and hand-over (lisguard.web.print_api): the special-requirements slip, the shift
    # hand-over; both audited there
    ("GET", "/api/patients/{patient_key}/slip"): "technologist",
    ("GET", "/api/handover"): "technologist",
    # alerts as FHIR DetectedIssue (lisguard.web.fhir_api; audited there). The CDS Hooks routes
    # (/cds-services) are not listed: the EHR's JWT is their credential (lisguard.web.cds_auth)
    ("GET", "/fhir/DetectedIssue"): "technologist",
    ("GET", "/fhir/DetectedIssue/{alert_id}"): "technologist",
}
# HL7 ingest is also open to admins (an admin may replay a message by hand)
ALSO_ALLOWED: dict[str, frozenset[str]] = {"sender": frozenset({"admin"})}
# reads of patient data: audited with who, what, when
PHI_READS = re.compile(r"^/api/(patients|alerts|events)(/|$)")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def allowed(role: str, needed: str) -> bool:
    if needed == PUBLIC:
        return True
    return needed in INCLUDES.get(role, frozenset()) or role in ALSO_ALLOWED.get(
        needed, frozenset()
    )


@dataclass
class LoginLimiter:
    """At most `max_failures` failed logins per client address per `window` seconds."""

    max_failures: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked_for(self, client: str) -> float:
        """Seconds until this client may try again (0 when it may now)."""
        recent = self._recent(client)
        if len(recent) < self.max_failures:
            return 0.0
        return max(0.0, recent[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        self._recent(client).append(self.clock())
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            self._failures.pop(next(iter(self._failures)))

    def _recent(self, client: str) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        while q and q[0] <= self.clock() - self.window:
            q.popleft()
        return q


@dataclass(frozen=True)
class Credential:
    """Who a request acts as: a bearer token, or a browser session opened with one."""

    token: ApiToken
    session: Session | None = None
    session_id: str = ""  # the cookie's value (its CSRF token is derived from it)


# why a request has no credential
NONE, BAD, ENDED = "none", "bad", "ended"


@dataclass
class AuthPolicy:
    store: Store
    enabled: bool = True
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    rules: SessionRules = field(default_factory=SessionRules)
    public_url: str = ""  # delivery.public_url: an own origin besides the Host header's

    async def identify(self, token: str) -> ApiToken | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_hash(token)
        found = await self.store.access.find_token(digest)
        # constant-time comparison of what was stored with what was presented
        if found is None or not hmac.compare_digest(found.token_hash, digest):
            return None
        return found if found.active else None

    async def authenticate(self, request: web.Request) -> tuple[Credential | None, str]:
        """The request's credential, or None and why (NONE, BAD or ENDED)."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = await self.identify(header[7:].strip())
            return (Credential(token), "") if token is not None else (None, BAD)
        session_id = sessions.presented_session(request)
        if not session_id:
            return None, NONE
        if not session_id.startswith(sessions.SESSION_PREFIX):
            return None, BAD
        digest = sessions.session_hash(session_id)
        found = await self.store.access.find_session(digest)
        if found is None or not hmac.compare_digest(found.session_hash, digest):
            return None, BAD
        at = datetime.now(UTC)
        if not found.live(at, self.rules.idle):
            return None, ENDED  # a real session that ended: no failed login
        if at - found.last_seen_at >= sessions.TOUCH_EVERY:
            await self.store.access.touch_session(found.id, at)
        return Credential(found.token, found, session_id), ""

    def forged(self, request: web.Request, credential: Credential | None) -> web.Response | None:
        """403 for an unsafe request the cross-site checks refuse (lisguard.web.csrf)."""
        if credential is not None and credential.session is None:
            return None  # a bearer token: no browser sends one on its own
        if credential is None or route_role(request) is None or _is_login(request):
            # nothing but the body vouches for it: only a foreign origin is refused
            return csrf.check_origin(request, self.public_url, required=False)
        return csrf.check_origin(request, self.public_url, required=True) or csrf.check_token(
            request, sessions.csrf_token(credential.session_id)
        )

    async def refuse(self, request: web.Request, why: str) -> web.Response:
        """401 (or 429 for an address past the failed-login limit)."""
        client = request.remote or "unknown"
        if why == BAD:
            wait = self.limiter.blocked_for(client)
            if wait > 0:
                return _too_many(wait)
            self.limiter.failed(client)
            await self.audit("auth.failed", "anonymous", client, path=request.path)
        message = (
            "your session has ended: log in again"
            if why == ENDED
            else "log in: send 'Authorization: Bearer <token>' or POST /api/login"
        )
        response = _deny(401, message, **{"WWW-Authenticate": 'Bearer realm="lisguard"'})
        sessions.clear_cookies(response, request)  # a dead cookie would be sent forever
        return response

    async def audit(self, kind: str, actor: str, subject: str, **detail: object) -> None:
        async with self.store.transaction() as tx:
            await tx.add_audit([AuditEvent(kind, datetime.now(UTC), actor, subject, detail)])


AUTH: web.AppKey[AuthPolicy] = web.AppKey("auth", AuthPolicy)
# who is acting on this request: set by the middleware, read by every handler that records an act
USER: web.RequestKey[str] = web.RequestKey("user", str)
ROLE: web.RequestKey[str] = web.RequestKey("role", str)
CREDENTIAL: web.RequestKey[Credential] = web.RequestKey("credential", Credential)


def acting_user(request: web.Request) -> str:
    return request.get(USER) or "anonymous"


def acting_role(request: web.Request) -> str:
    return request.get(ROLE) or ""


def route_role(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    path = info.canonical if info is not None else request.path
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_ROLES.get((method, path))


def _is_login(request: web.Request) -> bool:
    info = request.match_info.route.resource
    return info is not None and info.canonical == "/api/login"


def _deny(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=extra)


def _too_many(wait: float) -> web.Response:
    return _deny(429, "too many failed logins; try again later", **{"Retry-After": f"{wait:.0f}"})


@web.middleware
async def require_role(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    policy = request.app[AUTH]
    needed = route_role(request)
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404/405: nothing to protect
    if needed is None:
        if request.path.startswith("/api/"):
            return _deny(403, f"{request.method} {request.path} is not open to any role")
        needed = PUBLIC  # page shells and static files: their data comes from the API
    if not policy.enabled:
        if (forged := policy.forged(request, None)) is not None:
            return forged  # no credentials on this bench, but no foreign page acts either
        request[USER] = "anonymous"
        request[ROLE] = "admin"
        await _audit_read(policy, request, "anonymous")  # reads are audited all the same
        return await handler(request)
    credential, why = await policy.authenticate(request)
    if (forged := policy.forged(request, credential)) is not None:
        return forged
    if credential is not None:
        request[CREDENTIAL] = credential
    if needed == PUBLIC:
        request[USER] = credential.token.name if credential else "anonymous"
        request[ROLE] = credential.token.role if credential else ""
        return await handler(request)
    if credential is None:
        return await policy.refuse(request, why)
    token = credential.token
    if not allowed(token.role, needed):
        return _deny(403, f"role {token.role!r} may not {request.method} {request.path}")
    request[USER] = token.name
    request[ROLE] = token.role
    await _audit_read(policy, request, token.name)
    return await handler(request)


async def _audit_read(policy: AuthPolicy, request: web.Request, actor: str) -> None:
    """A read of patient data is audited before it runs, naming the patient when it is about
    one, so that a search by patient shows who looked at its data."""
    if request.method != "GET" or not PHI_READS.match(request.path):
        return
    read: dict[str, object] = {"query": request.query_string}
    patient = request.match_info.get("patient_key") or request.query.get("patient")
    if patient:
        read["patient"] = patient
    await policy.audit("phi.read", actor, request.path, **read)


def _me(credential: Credential, policy: AuthPolicy) -> dict[str, object]:
    token, session = credential.token, credential.session
    return {
        "user": token.name,
        "role": token.role,
        # the pages send it back in X-Lisguard-CSRF; a bearer token needs none
        "csrf": sessions.csrf_token(credential.session_id) if session else "",
        "expires_at": session.ends_at(policy.rules.idle).isoformat() if session else None,
    }


async def login(request: web.Request) -> web.Response:
    """Body {"token": "..."}: on success a new session, its id in an HttpOnly cookie."""
    policy = request.app[AUTH]
    client = request.remote or "unknown"
    raw = await request.read()
    if (refused := csrf.require_json(request, raw)) is not None:
        return refused
    try:
        presented = str(json.loads(raw)["token"])
    except (ValueError, KeyError, TypeError):
        return _deny(400, 'send JSON {"token": "lg_..."}')
    token = await policy.identify(presented)
    if token is None:
        wait = policy.limiter.blocked_for(client)
        if wait > 0:
            return _too_many(wait)
        policy.limiter.failed(client)
        await policy.audit("auth.failed", "anonymous", client, path=request.path)
        return _deny(401, "unknown or revoked token")
    session_id = sessions.new_session_id()
    at = datetime.now(UTC)
    session = await policy.store.access.add_session(
        token,
        sessions.session_hash(session_id),
        at=at,
        expires_at=at + policy.rules.lifetime,
        client=client,
    )
    response = web.json_response(_me(Credential(token, session, session_id), policy))
    sessions.set_cookie(response, request, policy.rules, session_id)
    return response


async def logout(request: web.Request) -> web.Response:
    """Ends the session on the server (the middleware has checked it is not cross-site)."""
    credential = request.get(CREDENTIAL)
    if credential is not None and credential.session is not None:
        await request.app[AUTH].store.access.end_session(
            credential.session.id, by=credential.token.name, at=datetime.now(UTC)
        )
    response = web.json_response({"status": "logged out"})
    sessions.clear_cookies(response, request)
    return response


async def me(request: web.Request) -> web.Response:
    credential = request.get(CREDENTIAL)
    if credential is None:  # authentication off
        body = {"user": acting_user(request), "role": acting_role(request), "csrf": ""}
        return web.json_response(body | {"expires_at": None})
    return web.json_response(_me(credential, request.app[AUTH]))


async def session_state(request: web.Request) -> web.Response:
    """Whether the caller is logged in, without a 401: the page asks this first, so that a
    logged-out browser shows the login alone (no filters, no "Connecting...", no error in the
    console)."""
    policy = request.app[AUTH]
    authenticated = not policy.enabled or request.get(CREDENTIAL) is not None
    return web.json_response({"authenticated": authenticated, "auth_required": policy.enabled})


def install(
    app: web.Application, *, store: Store, http: HttpSettings | None = None, public_url: str = ""
) -> None:
    """Tokens, sessions and the cross-site checks on every route; security headers on every
    response (lisguard.web.headers)."""
    http = http or HttpSettings()
    app[AUTH] = AuthPolicy(
        store,
        http.auth_required,
        LoginLimiter(max_failures=http.max_failed_logins_per_minute),
        SessionRules.from_settings(http),
        public_url,
    )
    headers.install(app, secure_cookies=http.secure_cookies)
    app.middlewares.append(require_role)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/session", session_state)
