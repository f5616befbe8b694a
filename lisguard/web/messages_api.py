"""The message browser: what lisguard received, what it answered, what it did; replay of
stored messages; reload of the knowledge base. The page is /messages (static/messages.*).

Routes (roles in lisguard.web.auth.ROUTE_ROLES, documented in static/openapi.json):
  GET  /api/messages                  search, newest first, paged by cursor (manager)
  GET  /api/messages/{message_id}     one message: text, segments, ACK, alerts, events (manager)
  POST /api/messages/replay           replay stored messages through ingest (admin)
  GET  /api/knowledge                 the knowledge in force: version, files, ingest (manager)
  POST /api/admin/knowledge/reload    reload knowledge and ingest settings (admin)

Raw messages are patient data: every search and every read is audited as `phi.read` before it
answers, naming the MRN searched for or the patient the message is about.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from lisguard.domain.identity import Identifier, PatientIdentity
from lisguard.reload import Reloader, ReloadRefused, policy_view
from lisguard.replay import MAX_MESSAGES, ReplayRequest, replay
from lisguard.services import Ingestor
from lisguard.store.base import AuditEvent
from lisguard.store.message_search import (
    MAX_LIMIT,
    OUTCOMES,
    FoundMessage,
    MessageLog,
    MessageQuery,
)
from lisguard.web import auth
from lisguard.web.api import ApiError, body_of, error
from lisguard.web.audit_query import BadQuery, parse_time
from lisguard.web.message_views import decoded, message_detail, message_row, names_patient

SEARCH_PARAMS = (
    "control_id", "mrn", "type", "outcome", "peer", "since", "until", "limit", "cursor"
)
DEFAULT_LIMIT = 50
MRN_CHUNK = 200  # candidates read at a time in an MRN search
MRN_MAX_SCAN = 5000  # candidates one request reads at most: then it answers with a cursor
MAX_REASON = 500
PAGE_FILES = {
    "/messages": ("messages.html", "text/html"),
    "/messages/messages.js": ("messages.js", "text/javascript"),
    "/messages/messages.css": ("messages.css", "text/css"),
}


@dataclass
class Browser:
    ingestor: Ingestor
    reloader: Reloader | None


BROWSER: web.AppKey[Browser] = web.AppKey("message_browser", Browser)


async def _audit_read(request: web.Request, **detail: Any) -> None:
    event = AuditEvent(
        "phi.read", datetime.now(UTC), auth.acting_user(request), request.path, detail
    )
    async with request.app[BROWSER].ingestor.store.transaction() as tx:
        await tx.add_audit([event])


def parse_search(params: Any) -> tuple[MessageQuery, str]:
    """The store query and the MRN (confirmed against PID-3, not by the store)."""
    unknown = sorted(set(params) - set(SEARCH_PARAMS))
    if unknown:
        raise BadQuery(f"unknown parameter {', '.join(unknown)}: use {', '.join(SEARCH_PARAMS)}")
    given = {k: v.strip() for k, v in params.items() if v.strip()}
    outcome = given.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadQuery(f"outcome={outcome!r}: one of {', '.join(OUTCOMES)}")
    try:
        limit = int(given.get("limit", DEFAULT_LIMIT))
        before = int(given["cursor"]) if "cursor" in given else None
    except ValueError:
        raise BadQuery("limit and cursor are whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit={limit} must be between 1 and {MAX_LIMIT}")
    since = parse_time("since", given["since"], end=False) if "since" in given else None
    until = parse_time("until", given["until"], end=True) if "until" in given else None
    if since is not None and until is not None and since >= until:
        raise BadQuery("since must be before until")
    query = MessageQuery(
        control_id=given.get("control_id"),
        message_type=given.get("type"),
        outcome=outcome,
        peer=given.get("peer"),
        since=since,
        until=until,
        before_id=before,
        limit=limit,
    )
    return query, given.get("mrn", "")


async def search(request: web.Request) -> web.Response:
    browser = request.app[BROWSER]
    try:
        query, mrn = parse_search(request.query)
    except BadQuery as exc:
        return error(400, str(exc))
    read: dict[str, Any] = {"query": request.query_string}
    if mrn:
        read["patient"] = mrn  # "who looked for this patient" is one audit search
    await _audit_read(request, **read)
    log = browser.ingestor.store.message_log
    identity = browser.ingestor.kb.identity
    if mrn:
        found, cursor = await _by_patient(log, query, mrn, identity)
    else:
        rows = await log.search(replace(query, limit=query.limit + 1))
        found = [(f, None) for f in rows[: query.limit]]
        cursor = found[-1][0].message.id if len(rows) > query.limit else None
    later = await log.later_events([f.message.id for f, _ in found])
    rows_out = [message_row(f, identity, later.get(f.message.id, []), t) for f, t in found]
    return web.json_response(
        {
            "messages": rows_out,
            "count": len(rows_out),
            "next_cursor": None if cursor is None else str(cursor),
        }
    )


async def _by_patient(
    log: MessageLog, query: MessageQuery, mrn: str, identity: PatientIdentity
) -> tuple[list[tuple[FoundMessage, str | None]], int | None]:
    """The messages naming this patient, and the cursor to go on from (None: searched to the
    end). The store finds the raw bytes holding the MRN; PID-3 (or MRG-1) confirms each. One
    request reads at most MRN_MAX_SCAN candidates, then answers with what it found and a
    cursor, so a rare MRN over a long range costs several requests, never one endless one."""
    plain = identity.normalise(Identifier(mrn.partition("^")[0])).id
    needle = plain.encode("utf-8") if plain and plain.isascii() else None
    found: list[tuple[FoundMessage, str | None]] = []
    cursor, scanned = query.before_id, 0
    while True:
        page = await log.search(replace(query, contains=needle, before_id=cursor, limit=MRN_CHUNK))
        for candidate in page:
            cursor, scanned = candidate.message.id, scanned + 1
            text = decoded(candidate.raw)[0] if candidate.raw else ""
            if text and names_patient(text, mrn, identity):
                found.append((candidate, text))
                if len(found) == query.limit:
                    return found, cursor
        if len(page) < MRN_CHUNK:
            return found, None
        if scanned >= MRN_MAX_SCAN:
            return found, cursor


async def get_message(request: web.Request) -> web.Response:
    browser = request.app[BROWSER]
    try:
        message_id = int(request.match_info["message_id"])
    except ValueError:
        return error(400, "a message id is a whole number")
    log = browser.ingestor.store.message_log
    found = await log.get(message_id)
    if found is None:
        await _audit_read(request, query=request.query_string, message=message_id)
        return error(404, f"no stored message {message_id}")
    identity = browser.ingestor.kb.identity
    events = await log.events_of(found.message)
    view = message_detail(found, identity, events, await log.alerts_of(message_id))
    read: dict[str, Any] = {"query": request.query_string, "message": message_id}
    if view["patient"]:
        read["patient"] = view["patient"]
    await _audit_read(request, **read)  # before the answer leaves, as every PHI read
    return web.json_response(view)


async def replay_messages(request: web.Request) -> web.Response:
    browser = request.app[BROWSER]
    try:
        body = await body_of(request)
    except ApiError as exc:
        return error(exc.status, exc.message)
    ids, reason = body.get("ids"), body.get("reason")
    if not isinstance(ids, list) or not ids or not all(type(i) is int and i > 0 for i in ids):
        return error(422, "ids: a list of message ids (whole numbers)")
    if len(ids) > MAX_MESSAGES:
        return error(422, f"ids: at most {MAX_MESSAGES} messages per replay")
    if not isinstance(reason, str) or not reason.strip():
        return error(422, "reason: say why (the fix made), it is kept in the audit log")
    if len(reason) > MAX_REASON:
        return error(422, f"reason: at most {MAX_REASON} characters")
    flags = {k: body.get(k, False) for k in ("reevaluate", "dry_run")}
    if not all(isinstance(v, bool) for v in flags.values()):
        return error(422, "reevaluate and dry_run are true or false")
    request_ = ReplayRequest(tuple(ids), reason.strip(), flags["reevaluate"], flags["dry_run"])
    report = await replay(browser.ingestor, request_, by=auth.acting_user(request))
    return web.json_response(report.view())


async def knowledge(request: web.Request) -> web.Response:
    browser = request.app[BROWSER]
    reloader, ingestor = browser.reloader, browser.ingestor
    return web.json_response(
        {
            "version": ingestor.knowledge.version,
            "loaded_at": reloader.loaded_at.isoformat() if reloader else None,
            "files": reloader.files() if reloader else [],
            "ingest": policy_view(ingestor.policy),
            "reloadable": reloader is not None,
        }
    )


async def reload_knowledge(request: web.Request) -> web.Response:
    reloader = request.app[BROWSER].reloader
    if reloader is None:
        return error(404, "this service was started without a reloadable configuration")
    try:
        done = await reloader.reload(by=auth.acting_user(request))
    except ReloadRefused as exc:
        body = {
            "error": str(exc),
            "status": 422,
            "kept_version": request.app[BROWSER].ingestor.knowledge.version,
        }
        return web.json_response(body, status=422)
    return web.json_response(done.view())


def _page_handler(file_name: str, content_type: str) -> Any:
    async def page(request: web.Request) -> web.Response:
        body = resources.files("lisguard.web").joinpath("static", file_name).read_bytes()
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    return page


def install(app: web.Application, *, ingestor: Ingestor, reloader: Reloader | None = None) -> None:
    app[BROWSER] = Browser(ingestor, reloader)
    r = app.router
    r.add_get("/api/messages", search)
    r.add_post("/api/messages/replay", replay_messages)
    r.add_get("/api/messages/{message_id}", get_message)
    r.add_get("/api/knowledge", knowledge)
    r.add_post("/api/admin/knowledge/reload", reload_knowledge)
    for path, (file_name, content_type) in PAGE_FILES.items():
        r.add_get(path, _page_handler(file_name, content_type))
