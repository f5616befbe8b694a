"""Two `lisguard serve` replicas on one PostgreSQL schema, both checking for due escalations
every 50 ms: each HIGH alert escalates once (one `alert.escalated` audit event, one escalations
row, one escalated webhook POST), whichever replica took the message or saw it due first; and a
page on either replica hears of every escalation, also the other replica's (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.transport.mllp import msa_code
from tests.e2e.receivers import WebhookReceiver
from tests.e2e.serve_process import ServeProcess, fresh_schema, with_query

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SAFETY = 60.0  # never an assertion: a hung test fails instead of blocking the suite
PATIENTS = 24
DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)


def settings_env(webhook_url: str) -> dict[str, str]:
    return {
        "LISGUARD_HTTP__AUTH_REQUIRED": "false",  # auth is not what this test is about
        "LISGUARD_LOG__LEVEL": "WARNING",
        "LISGUARD_DELIVERY__POLL_SECONDS": "0.05",
        "LISGUARD_DELIVERY__WEBHOOK__ENABLED": "true",
        "LISGUARD_DELIVERY__WEBHOOK__URL": webhook_url,
        "LISGUARD_ESCALATION__AFTER_MINUTES": "0.03",  # 1.8 s
        "LISGUARD_ESCALATION__CHECK_SECONDS": "0.05",
        "LISGUARD_ESCALATION__CHANNELS": '[{"channel": "webhook"}]',
    }


class Page:
    """What a page connected to one replica hears: escalated alert ids, by either event."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http, self.port = http, port
        self.escalated: set[str] = set()
        self.connected = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.http.get(f"http://127.0.0.1:{self.port}/api/events") as resp:
            name = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data: dict[str, Any] = json.loads(line[6:])
                    if name == "hello":
                        self.connected.set()
                    elif name == "escalated" or (name == "alert" and data.get("escalated_at")):
                        self.escalated.add(data["id"])


async def test_two_replicas_escalate_each_alert_once(tmp_path: Path, pg_dsn: str) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    async with fresh_schema(pg_dsn, "lisguard_escalation_replicas") as (schema, admin):
        url = with_query(pg_dsn, search_path=schema)
        a = ServeProcess(url, tmp_path / "a.log", **settings_env(receiver.url))
        b = ServeProcess(url, tmp_path / "b.log", **settings_env(receiver.url))
        a.start()
        b.start()
        try:
            await asyncio.gather(a.wait_ready(), b.wait_ready())
            async with aiohttp.ClientSession() as http:
                pages = [Page(http, a.http_port), Page(http, b.http_port)]
                async with asyncio.timeout(SAFETY):
                    await asyncio.gather(*(p.connected.wait() for p in pages))
                messages = [DOSE.format(mrn=f"REP{i:02d}") for i in range(PATIENTS)]
                acks = await asyncio.gather(a.send(messages[::2]), b.send(messages[1::2]))
                assert Counter(msa_code(x) for batch in acks for x in batch) == {"AA": PATIENTS}
                ids = {r[0] for r in await admin.fetch(f'SELECT id FROM "{schema}".alerts')}
                assert len(ids) == PATIENTS

                def escalation_posts() -> list[str]:
                    bodies = [json.loads(p.body) for p in receiver.received]
                    return [body["id"] for body in bodies if body.get("escalated")]

                async with asyncio.timeout(SAFETY):
                    while not (
                        set(escalation_posts()) == ids and all(p.escalated == ids for p in pages)
                    ):
                        await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # twenty more checks on each replica: nothing more

                async with http.get(f"http://127.0.0.1:{b.http_port}/api/escalations") as resp:
                    banner = await resp.json()
                assert {e["id"] for e in banner["escalations"]} == ids
                for page in pages:
                    page.task.cancel()

            rows = await admin.fetch(
                f'SELECT subject FROM "{schema}".audit_events WHERE kind = $1', "alert.escalated"
            )
            assert Counter(r[0] for r in rows) == dict.fromkeys(ids, 1)
            escalations = await admin.fetchval(f'SELECT count(*) FROM "{schema}".escalations')
            assert escalations == PATIENTS
            assert Counter(escalation_posts()) == dict.fromkeys(ids, 1)
            by = {
                name: server.log_text().count('"alert_escalated"')
                for name, server in (("a", a), ("b", b))
            }
            print("escalated by replica:", by)
            assert sum(by.values()) == PATIENTS
            assert a.terminate() == 0
            assert b.terminate() == 0
        finally:
            a.kill()
            b.kill()
            await receiver.stop()
