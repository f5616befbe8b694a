"""Delivery is visible: a failing delivery shows in /metrics (outbox pending, its age, retries
per channel) and in a WARNING log line within seconds, without patient data; a delivery brings
pending back to 0. Also: process/python metrics, open MLLP connections, garbage bytes counted
apart from rejected frames, bounded per-sender counts, and the `metrics` role."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from lisguard.alerting.outbox import _warn
from lisguard.app import Service
from lisguard.services import IngestResult
from lisguard.transport.metrics import MAX_SENDERS, Metrics
from lisguard.transport.mllp import MllpClient
from lisguard.web.auth import ROUTE_ROLES, allowed, new_token, token_hash
from tests.conftest import ServiceFactory
from tests.e2e.receivers import WebhookReceiver
from tests.e2e.test_delivery import delivery_settings, one_alert, start_service

BOUND = 10.0  # the finding: visible "within a minute"; here, with fast retries, seconds


async def scrape(service: Service, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{service.http_port}/metrics"
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
            return await resp.text()


def value(text: str, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


async def eventually(service: Service, series: str, check: float | Callable[[float], bool]) -> str:
    """Scrape until `series` passes `check` (a value or a predicate); the last page."""
    test: Callable[[float], bool] = check if callable(check) else (lambda v: v == check)
    async with asyncio.timeout(BOUND):
        while True:
            text = await scrape(service)
            found = value(text, series)
            if found is not None and test(found):
                return text
            await asyncio.sleep(0.05)


async def test_a_failing_delivery_shows_in_metrics_and_a_warning(tmp_path: Path) -> None:
    receiver = WebhookReceiver(statuses=itertools.repeat(500))  # the receiver is broken
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("webhook", receiver.port))
    try:
        before = await scrape(service)
        assert value(before, 'lisguard_outbox_pending{channel="webhook"}') == 0
        assert value(before, 'lisguard_deliveries_total{channel="webhook",outcome="retry"}') == 0
        with capture_logs() as logs:
            alert_id = await one_alert(service, "MRN900")
            failing = 'lisguard_deliveries_total{channel="webhook",outcome="retry"}'
            text = await eventually(service, failing, lambda v: v >= 2)
            assert value(text, 'lisguard_outbox_pending{channel="webhook"}') == 1
            oldest = value(text, 'lisguard_outbox_oldest_pending_seconds{channel="webhook"}')
            assert oldest is not None and 0 < oldest < BOUND
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert warnings, logs
        first = warnings[0]
        assert first["event"] == "delivery_failed"
        assert (first["channel"], first["alert"], first["attempt"]) == ("webhook", alert_id, 1)
        assert "500" in first["error"]
        # back-off: attempts 1, 2, 4, 8... warn; the others are info
        attempts = sorted(e["attempt"] for e in warnings if e["event"] == "delivery_failed")
        assert all(a & (a - 1) == 0 for a in attempts), attempts
        assert not any("DOE" in str(e) or "JANE" in str(e) for e in logs)  # no PHI

        receiver.statuses = iter(())  # repaired: 200 from now on
        text = await eventually(service, 'lisguard_outbox_pending{channel="webhook"}', 0)
        assert value(text, 'lisguard_outbox_oldest_pending_seconds{channel="webhook"}') == 0
        delivered = value(text, 'lisguard_deliveries_total{channel="webhook",outcome="delivered"}')
        assert delivered == 1
        assert value(text, 'lisguard_deliveries_total{channel="webhook",outcome="failed"}') == 0
    finally:
        await service.stop()
        await receiver.stop()


def test_warnings_back_off() -> None:
    warned = [n for n in range(1, 40) if _warn("retry", n)]
    assert warned == [1, 2, 4, 8, 16, 32]
    assert _warn("failed", 7) and not _warn("delivered", 1)


async def test_process_metrics_connections_and_garbage(service_factory: ServiceFactory) -> None:
    svc: Service = await service_factory()
    assert svc.mllp_port
    text = await scrape(svc)
    for name in ("process_cpu_seconds_total", "python_info", "python_gc_objects_collected_total"):
        assert re.search(rf"^{name}", text, re.M), name
    assert value(text, "lisguard_mllp_connections_open") == 0
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        assert client._writer is not None
        client._writer.write(b"junk before a frame")  # 19 bytes outside any frame
        msg = "MSH|^~\\&|LAB|HOSP|LG|BB|20260101||ADT^A08|G1|P|2.5\rPID|1||9\r"
        assert "MSA|AA|G1" in await client.send(msg.encode())
        text = await scrape(svc)
        assert value(text, "lisguard_mllp_connections_open") == 1
        assert value(text, "lisguard_mllp_garbage_bytes_total") == 19
        assert value(text, 'lisguard_messages_by_sender_total{sender="LAB@HOSP"}') == 1
        assert 'lisguard_mllp_frames_rejected_total{reason="garbage_bytes"}' not in text
    await eventually(svc, "lisguard_mllp_connections_open", 0)


def test_sender_series_are_bounded() -> None:
    metrics = Metrics()
    for n in range(MAX_SENDERS + 20):
        result = IngestResult(["MSA|AA"], "accepted", f"C{n}", "ADT^A08", sender=f"APP{n}@F\n")
        metrics.observe(result, "mllp", 0.001)
    text = metrics.render().decode()
    series = re.findall(r"^lisguard_messages_by_sender_total\{", text, re.M)
    assert len(series) == MAX_SENDERS + 1
    assert value(text, 'lisguard_messages_by_sender_total{sender="other"}') == 20
    assert value(text, 'lisguard_messages_by_sender_total{sender="APP0@F_"}') == 1


async def test_the_metrics_role_reads_metrics_and_nothing_else(
    service_factory: ServiceFactory,
) -> None:
    svc: Service = await service_factory(http={"auth_required": True})
    token = new_token()
    await svc.store.access.add_token(
        "prom", "metrics", token_hash(token), by="t", at=datetime.now(UTC)
    )
    assert [route for route, role in ROUTE_ROLES.items() if allowed("metrics", role)] == [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/api/login"),
        ("POST", "/api/logout"),
        ("GET", "/api/session"),  # public: logged in or not, nothing else
        ("GET", "/api/openapi.json"),
        ("GET", "/metrics"),
    ]
    assert "lisguard_mllp_connections_open" in await scrape(svc, token)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{svc.http_port}"
    async with aiohttp.ClientSession() as http:
        for method, path in [("GET", "/api/me"), ("GET", "/api/alerts"), ("GET", "/api/audit")]:
            async with http.request(method, base + path, headers=headers) as resp:
                assert resp.status == 403, path
        async with http.post(f"{base}/api/hl7", data=b"MSH|", headers=headers) as resp:
            assert resp.status == 403
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 401
