"""The alert API the technologist page uses (documented in static/openapi.json).

Errors are JSON `{"error": "...", "status": n}`: 400 malformed request (not JSON, bad query
parameter), 404 no such alert/patient/snooze, 409 the alert's status does not allow the action
(e.g. acknowledging a resolved alert), 415 a body not sent as `Content-Type: application/json`,
422 a well-formed body with wrong or missing fields.

Who acted: `acting_user` - the user the auth middleware put on the request
(lisguard.web.auth.acting_user); on a bench with authentication switched off, the name the page
sends as `by`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from lisguard.alerting.summary import patient_summary
from lisguard.domain.alerts import Audience, RuleId
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.store.base import Store
from lisguard.store.desk import (
    RESOLUTIONS,
    SECTIONS,
    STATUSES,
    UNRESOLVED,
    AlertNotFound,
    AlertQuery,
    TransitionRefused,
)
from lisguard.web import auth, csrf, queue
from lisguard.web.live import LiveFeed
from lisguard.web.views import (
    AUDIENCE_TITLES,
    RULE_TITLES,
    alert_view,
    meanings,
    patient_view,
    snooze_view,
)

STORE: web.AppKey[Store] = web.AppKey("desk_store", Store)
KB: web.AppKey[KnowledgeBase] = web.AppKey("desk_kb", KnowledgeBase)
LIVE: web.AppKey[LiveFeed] = web.AppKey("live_feed", LiveFeed)
CHANNELS: web.AppKey[tuple[str, ...]] = web.AppKey("delivery_channels")

MAX_NOTE = 1000
MAX_SNOOZE_HOURS = 24 * 30
HEARTBEAT_SECONDS = 15.0
RULES = frozenset(r.value for r in RuleId)
AUDIENCES = tuple(a.value for a in Audience)
TEST_FILTER: dict[str, bool | None] = {"exclude": False, "only": True, "include": None}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Desk errors as JSON with the right status."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return error(exc.status, exc.message)
    except AlertNotFound as exc:
        return error(404, str(exc))
    except TransitionRefused as exc:
        return error(409, str(exc))


@web.middleware
async def refuse_nul(request: web.Request, handler: Any) -> web.StreamResponse:
    """A NUL character in the path or a query parameter is a bad request, answered before
    anything (the read audit included) hands it to a database that cannot store it."""
    if "\x00" in request.path or any("\x00" in k + v for k, v in request.query.items()):
        return error(400, "the request holds a NUL character")
    response: web.StreamResponse = await handler(request)
    return response


def now() -> datetime:
    return datetime.now(UTC)


async def body_of(request: web.Request) -> dict[str, Any]:
    """The JSON object body ({} when empty); 400 when it is not JSON or not an object, 415
    when it is not sent as application/json (a cross-site form or no-cors fetch cannot be:
    lisguard.web.csrf)."""
    raw = await request.read()
    if csrf.wrong_body_type(request, raw):
        raise ApiError(415, f"send the body as JSON with Content-Type: {csrf.JSON}")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if _holds_nul(body):
        raise ApiError(400, "the body holds a NUL character")
    return body


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False


def text_field(
    body: dict[str, Any], name: str, *, required: bool = False, limit: int = MAX_NOTE
) -> str:
    value = body.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApiError(422, f"{name!r} must be a string")
    value = value.strip()
    if required and not value:
        raise ApiError(422, f"{name!r} is required")
    if len(value) > limit:
        raise ApiError(422, f"{name!r} is longer than {limit} characters")
    return value


def acting_user(request: web.Request, body: dict[str, Any]) -> str:
    """The authenticated user (set by the auth middleware, lisguard.web.auth). Only when
    authentication is switched off - the middleware then marks the request user "anonymous"
    with role "admin" - is the name the page sends as `by` taken, so a logged-in user can never
    act under another name."""
    user = auth.acting_user(request)
    if user == "anonymous" and auth.acting_role(request) == "admin":
        named = body.get("by")
        if isinstance(named, str) and named.strip():
            return named.strip()[:64]
    return user


def expiry(body: dict[str, Any], at: datetime) -> datetime:
    hours = body.get("hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float):
        raise ApiError(422, "'hours' (how long the snooze lasts) must be a number")
    if not 0 < hours <= MAX_SNOOZE_HOURS:
        raise ApiError(422, f"'hours' must be more than 0 and at most {MAX_SNOOZE_HOURS}")
    return at + timedelta(hours=float(hours))


def rule_field(value: Any, status: int) -> str:
    if not isinstance(value, str) or value not in RULES:
        raise ApiError(status, f"unknown rule {value!r}: one of {', '.join(sorted(RULES))}")
    return value


def audience_filter(value: str) -> tuple[str, ...]:
    """`audience=clinic` or `audience=blood_bank,serology`: the audiences asked for, in order,
    once each; 400 naming the allowed ones for any other."""
    chosen = tuple(dict.fromkeys(a.strip() for a in value.split(",") if a.strip()))
    bad = [a for a in chosen if a not in AUDIENCES]
    if bad or not chosen:
        named = ", ".join(repr(a) for a in bad) if bad else repr(value)
        raise ApiError(400, f"unknown audience {named}: one or more of {', '.join(AUDIENCES)}")
    return chosen


# ---------------------------------------------------------------- alerts


async def list_alerts(request: web.Request) -> web.Response:
    """The queue in triage order (lisguard.web.queue): `section` queue | background | all,
    `limit` per page, `cursor` the `next_cursor` of the page before."""
    q = request.query
    status = q.get("status", ",".join(UNRESOLVED))
    statuses: tuple[str, ...] = ()
    if status != "all":
        statuses = tuple(s for s in status.split(",") if s)
        bad = [s for s in statuses if s not in STATUSES]
        if bad or not statuses:
            raise ApiError(400, f"unknown status {bad or status!r}: {', '.join(STATUSES)} or all")
    rule = rule_field(q["rule"], 400) if q.get("rule") else None
    # several as `audience=a,b` or as `audience=a&audience=b`
    audiences = audience_filter(",".join(q.getall("audience"))) if q.get("audience") else ()
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    if not 1 <= limit <= 500:
        raise ApiError(400, "limit must be between 1 and 500")
    # alerts of test messages (MSH-11 T/D) only when asked for: a queue is production's
    test = q.get("test", "exclude")
    if test not in TEST_FILTER:
        raise ApiError(400, f"test must be one of {', '.join(TEST_FILTER)}")
    section = q.get("section", "all")
    if section not in SECTIONS:
        raise ApiError(400, f"section must be one of {', '.join(SECTIONS)}")
    orders = queue.transfusion_orders(request.app[KB])
    query = AlertQuery(
        statuses=statuses,
        rule=rule,
        location=q.get("location") or None,
        audiences=audiences,
        patient=q.get("patient") or None,
        test=TEST_FILTER[test],
        limit=limit,
        transfusion=orders,
        section=section,
    )
    store = request.app[STORE]
    settings = queue.desk_settings(request.app)
    try:
        page = await queue.read_page(store.desk, query, q.get("cursor"), now(), settings)
    except queue.BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    body = await queue.page_json(store, page, orders, section, settings)
    return web.json_response(body)


async def get_alert(request: web.Request) -> web.Response:
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    record = await store.desk.get(alert_id)
    if record is None:
        raise ApiError(404, f"no alert {alert_id!r}")
    deliveries = await store.desk.deliveries(alert_id)
    repeats = await store.desk.repeats(alert_id)
    marks = await store.escalations.marks([alert_id])
    view = alert_view(record, deliveries, repeats, escalated_at=marks.get(alert_id))
    before = queue.background_before(queue.desk_settings(request.app), now())
    view["triage"] = queue.triage_view(record, queue.transfusion_orders(request.app[KB]), before)
    return web.json_response(view)


async def _changed(request: web.Request, alert_id: str) -> dict[str, Any]:
    """Tell the live pages; the alert's view for the answer."""
    store = request.app[STORE]
    await request.app[LIVE].changed(alert_id)
    record = await store.desk.get(alert_id)
    if record is None:
        raise ApiError(404, f"no alert {alert_id!r}")
    return alert_view(record, await store.desk.deliveries(alert_id))


async def acknowledge(request: web.Request) -> web.Response:
    body = await body_of(request)
    note = text_field(body, "note")
    alert_id = request.match_info["alert_id"]
    await request.app[STORE].desk.acknowledge(
        alert_id, by=acting_user(request, body), at=now(), note=note
    )
    return web.json_response(await _changed(request, alert_id))


async def resolve(request: web.Request) -> web.Response:
    body = await body_of(request)
    resolution = body.get("resolution")
    if resolution not in RESOLUTIONS:
        raise ApiError(422, f"'resolution' must be one of {', '.join(RESOLUTIONS)}")
    reason = text_field(body, "reason", required=resolution == "not-applicable")
    alert_id = request.match_info["alert_id"]
    await request.app[STORE].desk.resolve(
        alert_id, by=acting_user(request, body), at=now(), resolution=resolution, reason=reason
    )
    return web.json_response(await _changed(request, alert_id))


async def snooze_alert(request: web.Request) -> web.Response:
    body = await body_of(request)
    reason = text_field(body, "reason", required=True)
    at = now()
    until = expiry(body, at)
    alert_id = request.match_info["alert_id"]
    found = await request.app[STORE].desk.get(alert_id)
    if found is not None and found.alert.test:
        # a snooze is per patient and rule, whatever the feed: it would hold back real alerts
        raise ApiError(
            409,
            f"alert {alert_id} is from a test message: resolve it (a snooze would hold back"
            " this patient's real alerts too)",
        )
    _, snooze = await request.app[STORE].desk.snooze_alert(
        alert_id, by=acting_user(request, body), at=at, expires_at=until, reason=reason
    )
    view = await _changed(request, alert_id)
    return web.json_response({"alert": view, "snooze": snooze_view(snooze, now())}, status=201)


# ---------------------------------------------------------------- patients and snoozes


async def get_patient(request: web.Request) -> web.Response:
    key = request.match_info["patient_key"]
    processing_id = request.query.get("processing_id", "P")  # T/D: as that test feed left it
    if processing_id not in ("P", "T", "D"):
        raise ApiError(400, "processing_id must be P, T or D")
    summary = await patient_summary(request.app[STORE], request.app[KB], key, processing_id)
    if summary is None:
        raise ApiError(404, f"lisguard knows nothing about patient {key!r}")
    return web.json_response(patient_view(summary, now()))


async def list_snoozes(request: web.Request) -> web.Response:
    active = request.query.get("active", "true")
    if active not in ("true", "false"):
        raise ApiError(400, "active must be true or false")
    snoozes = await request.app[STORE].desk.list_snoozes(
        patient_key=request.query.get("patient") or None,
        active_at=now() if active == "true" else None,
    )
    at = now()
    return web.json_response({"snoozes": [snooze_view(s, at) for s in snoozes]})


async def add_snooze(request: web.Request) -> web.Response:
    body = await body_of(request)
    patient = text_field(body, "patient", required=True, limit=200)
    rule = rule_field(body.get("rule"), 422)
    reason = text_field(body, "reason", required=True)
    at = now()
    until = expiry(body, at)
    snooze = await request.app[STORE].desk.add_snooze(
        patient, rule, by=acting_user(request, body), at=at, expires_at=until, reason=reason
    )
    return web.json_response(snooze_view(snooze, now()), status=201)


async def lift_snooze(request: web.Request) -> web.Response:
    raw = request.match_info["snooze_id"]
    if not raw.isdigit():
        raise ApiError(400, f"snooze id {raw!r} is not a number")
    body = await body_of(request)
    snooze = await request.app[STORE].desk.lift_snooze(
        int(raw), by=acting_user(request, body), at=now()
    )
    return web.json_response(snooze_view(snooze, now()))


# ---------------------------------------------------------------- page support


async def meta(request: web.Request) -> web.Response:
    store = request.app[STORE]
    channels: tuple[str, ...] = request.app[CHANNELS]
    return web.json_response(
        {
            "user": auth.acting_user(request),
            "rules": [{"id": k, "title": v} for k, v in RULE_TITLES.items()],
            "audiences": [{"id": k, "title": v} for k, v in AUDIENCE_TITLES.items()],
            "statuses": list(STATUSES),
            "resolutions": list(RESOLUTIONS),
            "recommendations": meanings(),
            "locations": await store.desk.locations(),
            "counts": await store.desk.counts(),  # production alerts
            "test_counts": await store.desk.counts(test=True),  # of test messages (MSH-11 T/D)
            "channels": list(channels),
        }
    )


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `alert` with the alert's view whenever one is new or changes."""
    feed = request.app[LIVE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must not hold events back
        }
    )
    await response.prepare(request)
    queue = feed.subscribe()
    try:
        await response.write(b"retry: 3000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    text = await queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if text is None:
                break
            await response.write(text.encode())
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        feed.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
