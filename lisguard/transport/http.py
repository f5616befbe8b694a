"""HTTP: ingest for senders that cannot speak MLLP, health, readiness and metrics."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.services import Ingestor
from lisguard.settings import HttpSettings
from lisguard.transport.metrics import Metrics

log = structlog.get_logger("lisguard.http")

INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor", Ingestor)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


async def post_hl7(request: web.Request) -> web.Response:
    """Body: one HL7 message or a batch (several messages, FHS/BHS, MLLP frames).

    Answers the ACK(s), in order, separated by CR; or JSON with `Accept: application/json`.
    HTTP status is about transport: 200 when every message was stored (whatever its ACK code),
    503 when the store refused one (its ACK says AR: resend later).
    """
    ingestor = request.app[INGESTOR]
    metrics = request.app[METRICS]
    body = await request.read()
    if not body.strip():
        return json_error(400, "empty body: send one HL7 v2 message or a batch")
    texts = split_messages(decode_bytes(body))
    if not texts:
        return json_error(400, "no HL7 message found in the body (each must start with MSH)")
    results = []
    for text in texts:
        started = time.perf_counter()
        result = await ingestor.ingest(text.encode("utf-8"), peer="http", text=text)
        seconds = time.perf_counter() - started
        metrics.observe(result, "http", seconds)
        log.info(
            "message",
            transport="http",
            type=result.message_type,
            control_id=result.control_id,
            outcome=result.outcome,
            ack=result.ack_code,
            latency_ms=round(seconds * 1000, 2),
            alerts=[a.rule.value for a in result.alerts],
            error=result.error or None,
        )
        results.append(result)
    status = 503 if any(r.outcome == "unavailable" for r in results) else 200
    if "application/json" in request.headers.get("Accept", ""):
        payload: list[dict[str, Any]] = [
            {
                "control_id": r.control_id,
                "message_type": r.message_type,
                "outcome": r.outcome,
                "ack_code": r.ack_code,
                "acks": r.responses,
                "error": r.error or None,
                "alerts": [a.to_json_dict() for a in r.alerts],
            }
            for r in results
        ]
        return web.json_response(payload, status=status)
    text = "".join(ack + "\r" for r in results for ack in r.responses)
    return web.Response(text=text, status=status, content_type=HL7_CONTENT_TYPE)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    if await request.app[INGESTOR].store.ping():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "store unavailable"}, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors as JSON with a clear message, never an HTML page or a stack trace."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return json_error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("http_handler_failed", path=request.path)
        return json_error(500, "internal error; see the service log")


# adds routes to the app; the composition root passes lisguard.web's (a sibling layer)
Extension = Callable[[web.Application], None]


def build_app(
    ingestor: Ingestor,
    settings: HttpSettings,
    metrics: Metrics,
    extensions: Sequence[Extension] = (),
) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[json_errors])
    app[INGESTOR] = ingestor
    app[METRICS] = metrics
    app.router.add_post("/api/hl7", post_hl7)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    for extend in extensions:
        extend(app)
    return app


async def start_http(
    ingestor: Ingestor,
    settings: HttpSettings,
    *,
    metrics: Metrics | None = None,
    ssl_context: ssl.SSLContext | None = None,
    extensions: Sequence[Extension] = (),
) -> web.AppRunner:
    app = build_app(ingestor, settings, metrics or Metrics(), extensions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
    await site.start()
    return runner
