"""Who may do what over HTTP: API tokens with roles, checked on every route.

Roles (issue 5): `technologist` reads alerts and patients and acts on alerts; `manager` also reads
the audit log and reports; `admin` also manages tokens and configuration; `sender` may only post
HL7. A route not listed in ROUTE_ROLES is refused to everyone (default deny), so a new route
cannot be exposed by accident: the table-driven test walks every registered route.

A token is `lg_` + 43 random URL-safe characters, shown once by `lisguard token create`; the store
keeps its SHA-256. Browsers log in once (POST /api/login) and get the token back as an HttpOnly,
SameSite=Strict cookie; API clients send `Authorization: Bearer <token>`. Failed logins are
counted per client address and refused for a while past a limit; each one is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from aiohttp import web

from lisguard.store.access import ApiToken
from lisguard.store.base import AuditEvent, Store

log = structlog.get_logger("lisguard.auth")

COOKIE = "lisguard_token"
TOKEN_PREFIX = "lg_"
# what each role may do beyond the roles it includes
INCLUDES: dict[str, frozenset[str]] = {
    "technologist": frozenset({"technologist"}),
    "manager": frozenset({"technologist", "manager"}),
    "admin": frozenset({"technologist", "manager", "admin"}),
    "sender": frozenset({"sender"}),
}
PUBLIC = "public"

# (method, path pattern) -> the role needed. Patterns are aiohttp resource canonical paths.
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,  # probes
    ("GET", "/readyz"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/logout"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("POST", "/api/hl7"): "sender",
    ("GET", "/metrics"): "manager",
    ("GET", "/api/me"): "technologist",
    # the manager view (lisguard.web.audit_api): audit search, export, chain check, reports
    ("GET", "/api/audit"): "manager",
    ("GET", "/api/audit/export"): "manager",
    ("GET", "/api/audit/verify"): "manager",
    ("GET", "/api/reports/daily"): "manager",
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


@dataclass
class AuthPolicy:
    store: Store
    enabled: bool = True
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    async def identify(self, token: str) -> ApiToken | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_hash(token)
        found = await self.store.access.find_token(digest)
        # constant-time comparison of what was stored with what was presented
        if found is None or not hmac.compare_digest(found.token_hash, digest):
            return None
        return found if found.active else None

    async def audit(self, kind: str, actor: str, subject: str, **detail: object) -> None:
        async with self.store.transaction() as tx:
            await tx.add_audit([AuditEvent(kind, datetime.now(UTC), actor, subject, detail)])


AUTH: web.AppKey[AuthPolicy] = web.AppKey("auth", AuthPolicy)
# who is acting on this request: set by the middleware, read by every handler that records an act
USER: web.RequestKey[str] = web.RequestKey("user", str)
ROLE: web.RequestKey[str] = web.RequestKey("role", str)


def acting_user(request: web.Request) -> str:
    return request.get(USER) or "anonymous"


def acting_role(request: web.Request) -> str:
    return request.get(ROLE) or ""


def presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(COOKIE, "")


def route_role(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    path = info.canonical if info is not None else request.path
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_ROLES.get((method, path))


def _deny(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


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
        request[USER] = "anonymous"
        request[ROLE] = "admin"
        await _audit_read(policy, request, "anonymous")  # reads are audited all the same
        return await handler(request)
    if needed == PUBLIC:
        token = (
            await policy.identify(presented_token(request)) if presented_token(request) else None
        )
        request[USER] = token.name if token else "anonymous"
        request[ROLE] = token.role if token else ""
        return await handler(request)
    client = request.remote or "unknown"
    wait = policy.limiter.blocked_for(client)
    if wait > 0:
        return _deny(
            429, "too many failed logins; try again later", **{"Retry-After": f"{wait:.0f}"}
        )
    presented = presented_token(request)
    token = await policy.identify(presented) if presented else None
    if token is None:
        if presented:
            policy.limiter.failed(client)
            await policy.audit("auth.failed", "anonymous", client, path=request.path)
        return _deny(
            401,
            "log in: send 'Authorization: Bearer <token>'",
            **{"WWW-Authenticate": 'Bearer realm="lisguard"'},
        )
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


async def login(request: web.Request) -> web.Response:
    """Body {"token": "..."}: on success, the token as an HttpOnly cookie for the pages."""
    policy = request.app[AUTH]
    client = request.remote or "unknown"
    wait = policy.limiter.blocked_for(client)
    if wait > 0:
        return _deny(
            429, "too many failed logins; try again later", **{"Retry-After": f"{wait:.0f}"}
        )
    try:
        body = await request.json()
        presented = str(body["token"])
    except (ValueError, KeyError, TypeError):
        return _deny(400, 'send JSON {"token": "lg_..."}')
    token = await policy.identify(presented)
    if token is None:
        policy.limiter.failed(client)
        await policy.audit("auth.failed", "anonymous", client, path=request.path)
        return _deny(401, "unknown or revoked token")
    await policy.audit("auth.login", token.name, client, role=token.role)
    response = web.json_response({"user": token.name, "role": token.role})
    response.set_cookie(
        COOKIE, presented, httponly=True, samesite="Strict", secure=request.secure, path="/"
    )
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"status": "logged out"})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    return web.json_response({"user": acting_user(request), "role": acting_role(request)})


def install(
    app: web.Application, *, store: Store, enabled: bool = True, max_failures: int = 10
) -> None:
    app[AUTH] = AuthPolicy(store, enabled, LoginLimiter(max_failures=max_failures))
    app.middlewares.append(require_role)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
