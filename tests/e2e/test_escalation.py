"""Escalation over real sockets against the running service, on every store: a HIGH alert nobody
acknowledges escalates once (live `escalated` event, GET /api/escalations, an escalated webhook
POST verified as a Standard Webhooks receiver does, one `alert.escalated` audit event), while
an acknowledged, a MEDIUM and a test alert do not; acknowledging takes it off the banner, not
off the record. And across restarts (SQLite, PostgreSQL): due while the service was down, it
escalates at the next start, once, also to an HL7 receiver; a third start repeats nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import hl7
import pytest

from lisguard.app import Service
from lisguard.store.escalation import ESCALATED
from lisguard.transport.mllp import MllpClient
from tests.conftest import service_settings
from tests.e2e.receivers import MllpReceiver, WebhookReceiver
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable, with_query

SAFETY = 30.0  # never an assertion: a hung test fails instead of blocking the suite
SECRET = "whsec_" + base64.b64encode(b"32 bytes shared w/ paging system").decode()
AFTER_MINUTES = 0.05  # 3 s: time to acknowledge one alert before it is due
CHECK = 0.05

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|{pid}|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19500102\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
FLOW_MRD = (  # on daratumumab: a MEDIUM flow-mrd alert for the flow lab
    "MSH|^~\\&|CPOE|HOSP|LISGUARD|BB|20260304082210||ORM^O01|MRD-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19500102\r"
    "PV1|1|O|HEMONC\r"
    "ORC|NW|MRD-{mrn}\r"
    "OBR|1|MRD-{mrn}||MRDFC^PLASMA CELL MRD, FLOW CYTOMETRY (BONE MARROW)^L|||202603040800\r"
)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(SAFETY):
        while not await check():
            await asyncio.sleep(0.02)


async def skip_without_pg() -> None:
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lisguard.db'}"
    else:
        await skip_without_pg()
        async with fresh_schema(PG_DSN, "lisguard_escalate") as (schema, _admin):
            yield with_query(PG_DSN, search_path=schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def lasting_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store that outlives the service (memory does not)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lisguard.db'}"
    else:
        await skip_without_pg()
        async with fresh_schema(PG_DSN, "lisguard_escalate_restart") as (schema, _admin):
            yield with_query(PG_DSN, search_path=schema)


async def send(service: Service, *messages: str) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for message in messages:
            assert "MSA|AA|" in await client.send(message.encode())


async def alert_of(service: Service, mrn: str, rule: str = "baseline-workup") -> str:
    for stored in await service.store.list_alerts(patient=f"{mrn}^HOSP"):
        if stored.alert.rule.value == rule:
            return stored.alert.id
    raise AssertionError(f"no {rule} alert for {mrn}")


async def escalation_events(service: Service) -> list[tuple[str, dict[str, Any]]]:
    events = await service.store.list_audit(limit=100_000)
    return [(e.event.subject, e.event.detail) for e in events if e.event.kind == ESCALATED]


class Events:
    """The live stream (GET /api/events) as a browser reads it, collected in the background."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base
        self.seen: list[tuple[str, str]] = []  # (event, data text)
        self.hello = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async with self.http.get(f"{self.base}/api/events") as resp:
            assert resp.status == 200
            event = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.seen.append((event, line[6:]))
                    if event == "hello":
                        self.hello.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(SAFETY):
            await self.hello.wait()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [json.loads(data) for name, data in self.seen if name == event]


def escalation_posts(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [json.loads(p.body) for p in receiver.received if json.loads(p.body).get("escalated")]


async def test_a_high_alert_nobody_acknowledges_escalates_once(
    tmp_path: Path, store_url: str
) -> None:
    receiver = WebhookReceiver(secret=SECRET)  # verifies each signature, refuses a bad one
    await receiver.start()
    settings = service_settings(
        tmp_path,
        store={"url": store_url},
        ingest={"processing_ids": ["P", "T"]},
        delivery={
            "poll_seconds": CHECK,
            "webhook": {"enabled": True, "url": receiver.url, "secret": SECRET},
        },
        escalation={
            "after_minutes": AFTER_MINUTES,
            "check_seconds": CHECK,
            "channels": [{"channel": "webhook", "audiences": ["blood_bank"]}],
        },
    )
    service = Service(settings)
    await service.start()
    base = f"http://127.0.0.1:{service.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            live = Events(http, base)
            await live.start()
            started = time.monotonic()
            await send(
                service,
                DOSE.format(mrn="ESC1", pid="P"),  # HIGH, nobody acknowledges it
                DOSE.format(mrn="ESC2", pid="P"),  # HIGH, acknowledged in time
                DOSE.format(mrn="ESC3", pid="T"),  # HIGH, of a test message
                FLOW_MRD.format(mrn="ESC1"),  # MEDIUM
            )
            late, acked = await alert_of(service, "ESC1"), await alert_of(service, "ESC2")
            medium = await alert_of(service, "ESC1", "flow-mrd")
            async with http.post(f"{base}/api/alerts/{acked}/acknowledge", json={}) as resp:
                assert resp.status == 200

            async def escalated() -> bool:
                return bool(live.of("escalated")) and bool(escalation_posts(receiver))

            await until(escalated)
            print(f"escalated {time.monotonic() - started:.2f} s after the alerts were sent")

            [pushed] = live.of("escalated")
            assert (pushed["id"], pushed["severity"], pushed["status"]) == (late, "high", "open")
            assert pushed["audience"] == "blood_bank" and pushed["location"] == "INFUS"
            assert pushed["open_minutes_when_escalated"] >= AFTER_MINUTES
            assert pushed["channels"] == ["escalation.webhook"]
            text = json.dumps(pushed)
            assert "ESC1" not in text and "DOE" not in text and "1950" not in text  # no patient

            async def card_updated() -> bool:
                return any(v["id"] == late and v["escalated_at"] for v in live.of("alert"))

            await until(card_updated)

            async with http.get(f"{base}/api/escalations") as resp:
                assert resp.status == 200
                banner = await resp.json()
            assert (banner["enabled"], banner["after_minutes"]) == (True, AFTER_MINUTES)
            assert [e["id"] for e in banner["escalations"]] == [late] and banner["count"] == 1

            [post] = escalation_posts(receiver)
            assert post["id"] == late and post["escalation_after_minutes"] == AFTER_MINUTES
            assert datetime.fromisoformat(post["escalated_at"]) == datetime.fromisoformat(
                pushed["escalated_at"]
            )
            escalation_headers = next(
                p.headers for p in receiver.received if json.loads(p.body).get("escalated")
            )
            assert escalation_headers["webhook-id"] == f"{late}-escalation"
            assert receiver.refused == []

            async def delivered_twice() -> bool:  # the first delivery and the escalation
                rows = await service.store.desk.deliveries(late)
                return [(r.channel, r.status) for r in rows] == [
                    ("escalation.webhook", "delivered"),
                    ("webhook", "delivered"),
                ]

            await until(delivered_twice)

            events = await escalation_events(service)
            assert [s for s, _ in events] == [late]
            detail = events[0][1]
            assert (detail["rule"], detail["severity"]) == ("baseline-workup", "high")
            assert detail["patient"] == "ESC1^HOSP" and detail["channels"] == ["escalation.webhook"]
            assert "DOE" not in json.dumps(detail)
            marks = await service.store.escalations.marks([late, acked, medium])
            assert list(marks) == [late]

            # acknowledged: off the banner at once, still on record, never escalated again
            async with http.post(f"{base}/api/alerts/{late}/acknowledge", json={}) as resp:
                assert resp.status == 200
            async with http.get(f"{base}/api/escalations") as resp:
                assert (await resp.json())["count"] == 0
            await asyncio.sleep(20 * CHECK)  # twenty more checks
            assert [s for s, _ in await escalation_events(service)] == [late]
            assert len(escalation_posts(receiver)) == 1
            assert len(live.of("escalated")) == 1
            live.stop()
    finally:
        await service.stop()
        await receiver.stop()


def escalation_orus(receiver: MllpReceiver) -> list[Any]:
    messages = [hl7.parse(text) for text in receiver.received]
    return [m for m in messages if str(m.segment("MSH")[10]).startswith("E")]


async def test_due_while_stopped_it_escalates_at_the_next_start_once(
    tmp_path: Path, lasting_url: str
) -> None:
    receiver = MllpReceiver()
    await receiver.start()
    settings = service_settings(
        tmp_path,
        store={"url": lasting_url},
        delivery={
            "poll_seconds": CHECK,
            "hl7": {"enabled": True, "host": "127.0.0.1", "port": receiver.port},
        },
        escalation={
            "after_minutes": AFTER_MINUTES,
            "check_seconds": CHECK,
            "channels": [{"channel": "hl7", "locations": ["infus"]}],
        },
    )
    try:
        first = Service(settings)
        await first.start()
        await send(first, DOSE.format(mrn="RST1", pid="P"))
        alert = await alert_of(first, "RST1")
        [stored] = await first.store.list_alerts(patient="RST1^HOSP")
        assert await escalation_events(first) == []
        await first.stop()  # before it is due

        due = stored.created_at + timedelta(minutes=AFTER_MINUTES)
        await asyncio.sleep((due - datetime.now(UTC)).total_seconds() + 0.2)  # nothing runs

        second = Service(settings)
        await second.start()
        try:

            async def escalated() -> bool:
                return bool(await escalation_events(second)) and bool(escalation_orus(receiver))

            await until(escalated)
            events = await escalation_events(second)
            assert [s for s, _ in events] == [alert]
            assert events[0][1]["open_minutes"] >= AFTER_MINUTES
            [oru] = escalation_orus(receiver)
            assert str(oru.segment("MSH")[10]) == "E" + alert[:19]
            assert str(oru.segment("OBR")[3]).startswith(alert)
            codes = {str(s[3]).split("^")[0]: s for s in oru if str(s[0]) == "OBX"}
            assert "LGESCALATED" in codes and str(codes["LGOPENMIN"][2]) == "NM"
        finally:
            await second.stop()

        third = Service(settings)
        await third.start()
        try:
            await asyncio.sleep(20 * CHECK)  # twenty checks: nothing more is due
            assert [s for s, _ in await escalation_events(third)] == [alert]
            rows = await third.store.desk.deliveries(alert)
            assert [(r.channel, r.status) for r in rows] == [
                ("escalation.hl7", "delivered"),
                ("hl7", "delivered"),
            ]
        finally:
            await third.stop()
        assert len(escalation_orus(receiver)) == 1
        plain = [t for t in receiver.received if not t.split("|")[9].startswith("E")]
        assert len(plain) == 1  # the first delivery, once
    finally:
        await receiver.stop()


async def test_switched_off_nothing_escalates_and_the_banner_is_told(tmp_path: Path) -> None:
    settings = service_settings(
        tmp_path,
        store={"url": "memory://"},
        escalation={"enabled": False, "after_minutes": 0.001, "check_seconds": CHECK},
    )
    service = Service(settings)
    await service.start()
    try:
        await send(service, DOSE.format(mrn="OFF1", pid="P"))
        await asyncio.sleep(20 * CHECK + 0.1)  # well past the limit, twenty checks' time
        assert await escalation_events(service) == []
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{service.http_port}/api/escalations") as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == {
                "enabled": False,
                "after_minutes": 0.001,
                "count": 0,
                "escalations": [],
            }
    finally:
        await service.stop()
