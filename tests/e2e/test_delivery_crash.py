"""kill -9 while the webhook receiver is down: the outbox rows were committed with the alerts, so
the restarted service delivers every alert, each exactly once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.transport.mllp import msa_code
from tests.e2e.receivers import WebhookReceiver
from tests.e2e.serve_process import ServeProcess
from tests.e2e.test_delivery import DOSE, SCREEN

pytestmark = pytest.mark.slow

SAFETY = 60.0  # never an assertion: a hung test fails instead of blocking the suite


async def alerts(server: ServeProcess) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{server.http_port}/api/alerts?status=all"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        body = await response.json()
    return list(body["alerts"])


async def until(server: ServeProcess, done: Any) -> list[dict[str, Any]]:
    async with asyncio.timeout(SAFETY):
        while True:
            views = await alerts(server)
            if views and all(done(d) for v in views for d in v["deliveries"]):
                return views
            await asyncio.sleep(0.05)


async def test_kill_9_while_the_receiver_is_down_loses_no_delivery(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    env = {
        "LISGUARD_HTTP__AUTH_REQUIRED": "false",
        "LISGUARD_DELIVERY__WEBHOOK__ENABLED": "true",
        "LISGUARD_DELIVERY__WEBHOOK__URL": receiver.url,
        "LISGUARD_DELIVERY__POLL_SECONDS": "0.05",
        "LISGUARD_DELIVERY__LEASE_SECONDS": "1",  # a row claimed at the kill is free again soon
        "LISGUARD_DELIVERY__RETRY__INITIAL_SECONDS": "0.05",
        "LISGUARD_DELIVERY__RETRY__MAX_SECONDS": "0.2",
    }
    url = f"sqlite:///{tmp_path / 'lisguard.db'}"
    first = ServeProcess(url, tmp_path / "first.log", **env)
    first.start()
    try:
        await first.wait_ready()
        acks = await first.send([DOSE.format(mrn="MRN900"), SCREEN.format(mrn="MRN900")])
        assert [msa_code(a) for a in acks] == ["AA", "AA"]
        views = await until(first, lambda d: d["attempts"] >= 2 and d["status"] == "pending")
        ids = sorted(v["id"] for v in views)
        assert len(ids) == 2
    finally:
        first.kill()  # SIGKILL: no graceful stop, no last try

    await receiver.start()
    second = ServeProcess(url, tmp_path / "second.log", **env)
    second.start()
    try:
        await second.wait_ready()
        await until(second, lambda d: d["status"] == "delivered")
    finally:
        assert second.terminate() == 0
        await receiver.stop()
    assert sorted(json.loads(p.body)["id"] for p in receiver.received) == ids
