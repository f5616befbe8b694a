"""The technologist page and the alert API: an extension the composition root hands to
`lisguard.transport.http.build_app` (`partial(install, ingestor=...)`).

The page is plain HTML, CSS and JavaScript (templates/index.html, static/); there is no build
step. Every /api route needs the role listed in lisguard.web.auth.ROUTE_ROLES once
authentication is on (technologist for all of these); the page shell and static files are
public, their data comes from the API. The OpenAPI document (static/openapi.json, plus the
manager routes from lisguard.web.audit_api) lists every route: a test keeps it true.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from aiohttp import web

from lisguard.services import Ingestor
from lisguard.web import api, audit_api, print_api
from lisguard.web.live import LiveFeed

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGE = HERE / "templates" / "index.html"
OPENAPI = STATIC / "openapi.json"


def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    document["paths"].update(audit_api.openapi_paths())
    return document


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


OPENAPI_KEY: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


def _replace_state(app: web.Application, key: web.AppKey[Any], value: Any) -> None:
    """A reloaded knowledge base for the handlers that read app[api.KB] per request (and for
    caches keyed on it). aiohttp warns that a running app's state should not change; this one
    value is swapped whole by design (lisguard.reload), so the warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app[key] = value


def install(app: web.Application, ingestor: Ingestor) -> None:
    """Add the page, the alert API and the live feed (`app[api.LIVE]`: the delivery workers
    publish status changes to it)."""
    feed = LiveFeed(ingestor.store)
    ingestor.listeners.append(feed.on_alerts)
    app[api.STORE] = ingestor.store
    app[api.KB] = ingestor.kb
    ingestor.knowledge.on_swap(lambda kb: _replace_state(app, api.KB, kb))
    app[api.LIVE] = feed
    app[api.CHANNELS] = ingestor.routing.names
    app[OPENAPI_KEY] = openapi_document()
    app.middlewares.append(api.api_errors)
    app.middlewares.insert(0, api.refuse_nul)  # outermost: before auth audits the request

    async def end_streams(_app: web.Application) -> None:
        feed.close()  # open event streams would otherwise hold the shutdown up

    async def listen(_app: web.Application) -> None:
        await feed.start()  # other replicas' changes (PostgreSQL)

    async def stop_listening(_app: web.Application) -> None:
        await feed.stop()

    app.on_startup.append(listen)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_listening)
    r = app.router
    r.add_get("/", page)
    r.add_static("/static/", STATIC, append_version=False)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/meta", api.meta)
    r.add_get("/api/events", api.events)
    r.add_get("/api/alerts", api.list_alerts)
    r.add_get("/api/alerts/{alert_id}", api.get_alert)
    r.add_post("/api/alerts/{alert_id}/acknowledge", api.acknowledge)
    r.add_post("/api/alerts/{alert_id}/resolve", api.resolve)
    r.add_post("/api/alerts/{alert_id}/snooze", api.snooze_alert)
    r.add_get("/api/patients/{patient_key}", api.get_patient)
    r.add_get("/api/snoozes", api.list_snoozes)
    r.add_post("/api/snoozes", api.add_snooze)
    r.add_delete("/api/snoozes/{snooze_id}", api.lift_snooze)
    print_api.install(app)  # the slip and the shift hand-over, with their print pages
