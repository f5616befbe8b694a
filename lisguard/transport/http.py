"""HTTP: ingest for senders that cannot speak MLLP, health, readiness and metrics."""

from __future__ import annotations

import codecs
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from lisguard.hl7v2.ack import ack_codec, wire_bytes
from lisguard.hl7v2.batch import read_batch
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.services import Ingestor, IngestResult
from lisguard.settings import HttpSettings
from lisguard.transport.metrics import Metrics

log = structlog.get_logger("lisguard.http")

INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor", Ingestor)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


async def post_hl7(request: web.Request) -> web.Response:
    """Body: one HL7 message, several, or a batch (FHS/BHS...BTS/FTS); MLLP frames allowed.

    Answers the ACK(s), in order, separated by CR; a batch, one batch of ACKs (BHS, an ACK per
    message, BTS; FHS/FTS when it had an FHS: lisguard.hl7v2.batch). The bytes are in the
    character set the (first) ACK's MSH-18 names, said in Content-Type. Or JSON with `Accept:
    application/json`: a list with each message's result; for a batch an object, `messages`
    (that list), `batch_ack` and `envelope_problems`.
    HTTP status is about transport: 200 when every message was stored (whatever its ACK code),
    503 when the store refused one (its ACK says AR: resend later).

    The JSON names the alerts a message raised by id and count only: their texts are patient
    data drawn from other feeds too, for the technologist page (role and `phi.read` audit),
    not for the sending system.
    """
    ingestor = request.app[INGESTOR]
    metrics = request.app[METRICS]
    body = await request.read()
    if not body.strip():
        return json_error(400, "empty body: send one HL7 v2 message or a batch")
    decoded = decode_bytes(body)
    batch = read_batch(decoded)
    texts = split_messages(decoded) if batch is None else []
    if batch is None and not texts:
        return json_error(400, "no HL7 message found in the body (each must start with MSH)")

    def observe(result: IngestResult, seconds: float) -> None:
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

    results: list[IngestResult] = []
    batch_ack = ""
    if batch is not None:  # answered as a unit: one batch ACK (HL7 v2 ch. 2 batch protocol)
        answered = await ingestor.ingest_batch(batch, peer="http", observe=observe)
        results, batch_ack = answered.parts, answered.responses[0]
    for text in texts:
        started = time.perf_counter()
        result = await ingestor.ingest(text.encode("utf-8"), peer="http", text=text)
        observe(result, time.perf_counter() - started)
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
                "alert_count": len(r.alerts),
                "alert_ids": [a.id for a in r.alerts],
            }
            for r in results
        ]
        if batch is not None:
            problems = batch.all_problems()
            answer = {"batch_ack": batch_ack, "envelope_problems": problems, "messages": payload}
            return web.json_response(answer, status=status)
        return web.json_response(payload, status=status)
    if batch is not None:
        text = batch_ack + "\r"
    else:
        text = "".join(ack + "\r" for r in results for ack in r.responses)
    return web.Response(
        body=wire_bytes(text),
        status=status,
        content_type=HL7_CONTENT_TYPE,
        charset=http_charset(ack_codec(text)),
    )


def http_charset(codec: str) -> str:
    """A Python codec as a Content-Type charset name (IANA/WHATWG spelling)."""
    name = codecs.lookup(codec).name
    return {"cp1252": "windows-1252", "euc_kr": "euc-kr"}.get(
        name, name.replace("iso8859-", "iso-8859-")
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    if await request.app[INGESTOR].store.ping():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "store unavailable"}, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh()  # the outbox gauges, from the store
    body = metrics.render()
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
