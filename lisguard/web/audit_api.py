"""The lab manager's view: search, export and verify the audit log; the daily summary; the page.

Routes (all need the `manager` role, see lisguard.web.auth.ROUTE_ROLES):
  GET /api/audit                      search, newest first, paged by before_seq
  GET /api/audit/export?format=csv    the same filters, every matching event, streamed
  GET /api/audit/verify               walk the hash chain, report where it breaks
  GET /api/reports/daily?from&to&tz   messages, alerts by rule, time to acknowledge per day
and the page shell GET /manager (+ its script and style sheet), which holds no data.

Reading the log is itself audited: a search as `phi.read` (the log names patients), an export as
`audit.exported` with who and which filters. This module sits beside lisguard.transport (the
layers keep them independent), so the composition root hands it the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from aiohttp import web

from lisguard.domain.audit import ChainReport
from lisguard.store.audit_chain import verify_audit_chain
from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import AuditEvent, Store
from lisguard.web import auth
from lisguard.web.audit_query import (
    EXPORT_FORMATS,
    EXPORT_PARAMS,
    BadQuery,
    csv_header,
    csv_line,
    event_json,
    jsonl_line,
    parse_date,
    parse_filters,
    parse_zone,
)
from lisguard.web.reports import MAX_DAYS, audit_pages, daily_report

AUDIT_STORE: web.AppKey[Store] = web.AppKey("audit_store", Store)
Verifier = Callable[[], Awaitable[ChainReport]]
# the keyed check against the anchor file (lisguard.store.audit_chain.verify_audit_log): the
# composition root holds the key and knows the file
AUDIT_VERIFY: web.AppKey[Verifier] = web.AppKey("audit_verify")
REPORT_PARAMS = ("from", "to", "tz")
DEFAULT_REPORT_DAYS = 14
# the routes and the role each needs: lisguard.web.auth.ROUTE_ROLES lists the same
ROUTES = {
    "/api/audit": "manager",
    "/api/audit/export": "manager",
    "/api/audit/verify": "manager",
    "/api/reports/daily": "manager",
}
PAGE_FILES = {
    "/manager": ("manager.html", "text/html"),
    "/manager/manager.js": ("manager.js", "text/javascript"),
    "/manager/manager.css": ("manager.css", "text/css"),
}
# the security headers (CSP, no framing, nosniff) are on every response: lisguard.web.headers
PAGE_HEADERS = {"Cache-Control": "no-cache"}


def bad_request(message: str) -> web.Response:
    return web.json_response({"error": message, "status": 400}, status=400)


def _user(request: web.Request) -> str:
    return auth.acting_user(request)


async def _audit(store: Store, event: AuditEvent) -> None:
    async with store.transaction() as tx:
        await tx.add_audit([event])


async def search(request: web.Request) -> web.Response:
    store = request.app[AUDIT_STORE]
    try:
        filters = parse_filters(request.query)
    except BadQuery as exc:
        return bad_request(str(exc))
    read = {"query": request.query_string}
    if filters.query.patient:  # the log read names this patient's events
        read["patient"] = filters.query.patient
    await _audit(
        store, AuditEvent("phi.read", datetime.now(UTC), _user(request), request.path, read)
    )
    limit = filters.query.limit
    # one more than asked tells whether an older page exists
    rows = await store.access.search_audit(replace(filters.query, limit=limit + 1))
    page = rows[:limit]
    return web.json_response(
        {
            "events": [event_json(r) for r in page],
            "count": len(page),
            "next_before_seq": page[-1].seq if len(rows) > limit else None,
        }
    )


async def export(request: web.Request) -> web.StreamResponse:
    store = request.app[AUDIT_STORE]
    fmt = request.query.get("format", "csv").strip().lower()
    if fmt not in EXPORT_FORMATS:
        return bad_request(f"format={fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
    try:
        filters = parse_filters(request.query, EXPORT_PARAMS)
    except BadQuery as exc:
        return bad_request(str(exc))
    now = datetime.now(UTC)
    # the export is a snapshot: events after this one (its own record included) are left out
    newest = await store.access.search_audit(AuditQuery(limit=1))
    bound = newest[0].seq + 1 if newest else None
    await _audit(
        store,
        AuditEvent(
            "audit.exported", now, _user(request), "", {"format": fmt, "filters": filters.given}
        ),
    )
    name = f"lisguard-audit-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8"
            if fmt == "csv"
            else "application/jsonl; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    if fmt == "csv":
        await response.write(csv_header().encode("utf-8"))
    if bound is not None:
        line = csv_line if fmt == "csv" else jsonl_line
        query = replace(filters.query, before_seq=bound)
        chunk: list[str] = []
        async for row in audit_pages(store, query):
            chunk.append(line(row))
            if len(chunk) >= 500:
                await response.write("".join(chunk).encode("utf-8"))
                chunk = []
        await response.write("".join(chunk).encode("utf-8"))
    await response.write_eof()
    return response


async def verify(request: web.Request) -> web.Response:
    report = await request.app[AUDIT_VERIFY]()
    return web.json_response(
        {
            "ok": report.ok,
            "checked": report.checked,
            "problems": report.problems,
            "last_hash": report.last_hash,
            "notes": report.notes,
        }
    )


async def daily(request: web.Request) -> web.Response:
    store = request.app[AUDIT_STORE]
    params = request.query
    unknown = sorted(set(params) - set(REPORT_PARAMS))
    try:
        if unknown:
            raise BadQuery(f"unknown parameter {', '.join(unknown)}: use from, to, tz")
        zone = parse_zone(params.get("tz", ""))
        today = datetime.now(zone or UTC).date()
        last = parse_date("to", params["to"]) if params.get("to") else today
        first = (
            parse_date("from", params["from"])
            if params.get("from")
            else last - timedelta(days=DEFAULT_REPORT_DAYS - 1)
        )
        if last < first:
            raise BadQuery("from must not be after to")
        if (last - first).days + 1 > MAX_DAYS:
            raise BadQuery(f"at most {MAX_DAYS} days per report")
    except BadQuery as exc:
        return bad_request(str(exc))
    return web.json_response(await daily_report(store, first, last, zone))


def _page_handler(file_name: str, content_type: str) -> Any:
    async def page(request: web.Request) -> web.Response:
        body = resources.files("lisguard.web").joinpath("static", file_name).read_bytes()
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS
        )

    return page


def install(app: web.Application, store: Store, verifier: Verifier | None = None) -> None:
    app[AUDIT_STORE] = store
    app[AUDIT_VERIFY] = verifier or (lambda: verify_audit_chain(store))
    app.router.add_get("/api/audit", search)
    app.router.add_get("/api/audit/export", export)
    app.router.add_get("/api/audit/verify", verify)
    app.router.add_get("/api/reports/daily", daily)
    for path, (file_name, content_type) in PAGE_FILES.items():
        app.router.add_get(path, _page_handler(file_name, content_type))


def openapi_paths() -> dict[str, Any]:
    """These routes for the service's OpenAPI document (issue 4 serves /api/openapi.json)."""
    filters = [
        _param("from", "Start: ISO date or date-time (UTC when no offset)"),
        _param("to", "End: a date includes that whole day; a date-time is exclusive"),
        _param("patient", "Patient key: its state changes and the events naming it"),
        _param("user", "Who acted (token name, 'system', 'anonymous')"),
        _param("kind", "Event type(s), comma separated; 'alert.' for a whole family"),
        _param("rule", "Alert rule (detail.rule)"),
    ]
    errors = {"400": {"description": "A parameter is unknown or malformed (JSON error)"}}
    return {
        "/api/audit": {
            "get": {
                "summary": "Search the audit log, newest first (role: manager)",
                "parameters": [
                    *filters,
                    _param("before_seq", "Paging: events older than this seq", "integer"),
                    _param("limit", "Events per page, 1-1000 (default 100)", "integer"),
                ],
                "responses": {"200": {"description": "{events, count, next_before_seq}"}, **errors},
            }
        },
        "/api/audit/export": {
            "get": {
                "summary": "Export matching events as CSV or JSON lines (role: manager)",
                "parameters": [*filters, _param("format", "csv (default) or jsonl")],
                "responses": {"200": {"description": "A streamed attachment"}, **errors},
            }
        },
        "/api/audit/verify": {
            "get": {
                "summary": "Verify the keyed audit chain and its last anchor (role: manager)",
                "responses": {"200": {"description": "{ok, checked, problems, last_hash, notes}"}},
            }
        },
        "/api/reports/daily": {
            "get": {
                "summary": "Per day: messages by ACK code, alerts by rule, time to ack",
                "parameters": [
                    _param("from", "First day (default: 13 days before to)"),
                    _param("to", "Last day (default: today)"),
                    _param("tz", "IANA time zone of the days (default UTC)"),
                ],
                "responses": {"200": {"description": "{days: [...], totals}"}, **errors},
            }
        },
    }


def _param(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}
