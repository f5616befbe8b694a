"""Print and hand-over for the blood bank: the special-requirements slip of a patient and the
shift hand-over, as JSON for the print pages and as the pages themselves.

Routes (role technologist, which managers and admins include: lisguard.web.auth.ROUTE_ROLES):
  GET /api/patients/{patient_key}/slip   the slip (lisguard.web.print_slip); audited as
                                          `patient.slip_printed` (besides the middleware's
                                          phi.read of every /api/patients read)
  GET /api/handover?since=ISO            the hand-over (lisguard.web.print_handover); audited as
                                          one `phi.read` per patient it lists (purpose handover)
and the page shells GET /print/slip?patient=KEY and GET /print/handover, which hold no data:
their scripts fetch it with the session cookie, as the technologist page does.
"""

from __future__ import annotations

import weakref
from datetime import UTC, datetime, timedelta
from importlib import resources

from aiohttp import web

from lisguard.alerting.summary import patient_summary
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.knowledge_holder import knowledge_fingerprint
from lisguard.store.base import AuditEvent, Store
from lisguard.web import api, auth
from lisguard.web.audit_query import BadQuery, parse_time
from lisguard.web.print_handover import collect, handover_view
from lisguard.web.print_slip import build_slip

# each knowledge base's printed version, worked out once (a reload brings a new one)
_VERSIONS: weakref.WeakKeyDictionary[KnowledgeBase, str] = weakref.WeakKeyDictionary()
SLIP_PRINTED = "patient.slip_printed"
# The hand-over's default reach when the page names no time: one bench shift, as long as a
# browser session may last (http.session_lifetime_hours' default); the page offers 8 and 12 h.
DEFAULT_HOURS = 12
MAX_DAYS = 7  # a hand-over is about a shift or a weekend, not a history (the audit log is)
PAGES = {
    "/print/slip": "slip.html",
    "/print/handover": "handover.html",
}


async def _audit(store: Store, events: list[AuditEvent]) -> None:
    async with store.transaction() as tx:
        await tx.add_audit(events)


async def slip(request: web.Request) -> web.Response:
    key = request.match_info["patient_key"]
    store, kb = request.app[api.STORE], request.app[api.KB]
    summary = await patient_summary(store, kb, key)
    if summary is None:
        raise api.ApiError(404, f"lisguard knows nothing about patient {key!r}")
    now = datetime.now(UTC)
    user = auth.acting_user(request)
    body = build_slip(summary, kb, now=now, printed_by=user, kb_version=kb_version(kb))
    # before the answer: a slip that was not recorded is never shown
    detail = {
        "patient": summary.key,
        "purpose": "print",
        "knowledge_base": body["version"]["knowledge_base"],
    }
    await _audit(store, [AuditEvent(SLIP_PRINTED, now, user, request.path, detail)])
    return web.json_response(body)


def kb_version(kb: KnowledgeBase) -> str:
    if (version := _VERSIONS.get(kb)) is None:
        version = _VERSIONS[kb] = knowledge_fingerprint(kb)
    return version


def since_of(request: web.Request, now: datetime) -> datetime:
    text = request.query.get("since", "").strip()
    if not text:
        return now - timedelta(hours=DEFAULT_HOURS)
    try:
        since = parse_time("since", text, end=False)
    except BadQuery as exc:
        raise api.ApiError(400, str(exc)) from None
    if since > now:
        raise api.ApiError(400, "since is in the future")
    if since < now - timedelta(days=MAX_DAYS):
        raise api.ApiError(400, f"since may be at most {MAX_DAYS} days ago")
    return since


async def handover(request: web.Request) -> web.Response:
    store = request.app[api.STORE]
    now = datetime.now(UTC)
    since = since_of(request, now)
    found = await collect(store, since)
    user = auth.acting_user(request)
    body = handover_view(found, now=now, printed_by=user, default_hours=DEFAULT_HOURS)
    # one read per patient listed, so that "who looked at this patient" finds it; a hand-over
    # that lists nobody is a read all the same
    base = {"purpose": "handover", "since": since.isoformat(), "query": request.query_string}
    keys: list[str | None] = list(found.patients) or [None]
    events = [
        AuditEvent("phi.read", now, user, request.path, base | ({"patient": k} if k else {}))
        for k in keys
    ]
    await _audit(store, events)
    return web.json_response(body)


def _page(file_name: str) -> web.Response:
    body = resources.files("lisguard.web").joinpath("templates", file_name).read_bytes()
    return web.Response(
        body=body, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


async def slip_page(request: web.Request) -> web.Response:
    return _page(PAGES["/print/slip"])


async def handover_page(request: web.Request) -> web.Response:
    return _page(PAGES["/print/handover"])


def install(app: web.Application) -> None:
    """The routes; the handlers read app[api.STORE] and app[api.KB] (lisguard.web.routes)."""
    r = app.router
    r.add_get("/api/patients/{patient_key}/slip", slip)
    r.add_get("/api/handover", handover)
    r.add_get("/print/slip", slip_page)
    r.add_get("/print/handover", handover_page)
