"""MSH-11 over real TCP against the running service and real local receivers: on the default
configuration a test (T) message is refused and raises nothing; where a site takes T, its alerts
are marked test in the API, shown apart, and never reach the webhook or HL7 receiver unless a
channel takes test alerts (then the ORU says MSH-11 T). And a receiver that decodes by MSH-18
reads a UTF-8 ORU right."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import hl7

from lisguard.app import Service
from lisguard.transport.mllp import MllpClient
from tests.conftest import service_settings
from tests.e2e.receivers import MllpReceiver, WebhookReceiver

SAFETY = 30.0  # never an assertion: a hung test fails instead of blocking the suite

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|{pid}|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|{location}\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|SCR-{mrn}|{pid}|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W\r"
    "ORC|NW|TS-{mrn}\r"
    "OBR|1|TS-{mrn}||890-4^Antibody screen^LN|||20260302081000\r"
)


def dose(mrn: str, pid: str = "P", location: str = "INFUS") -> str:
    return DOSE.format(mrn=mrn, pid=pid, location=location)


def delivery_settings(
    webhook: int | None = None, mllp: int | None = None, **extra: Any
) -> dict[str, Any]:
    """Fast polling and retries; the channels whose receiver port is given."""
    settings: dict[str, Any] = {
        "poll_seconds": 0.05,
        "retry": {"initial_seconds": 0.05, "max_seconds": 0.2},
    }
    if webhook is not None:
        url = f"http://127.0.0.1:{webhook}/hook"
        settings["webhook"] = {"enabled": True, "url": url, **extra}
    if mllp is not None:
        settings["hl7"] = {"enabled": True, "host": "127.0.0.1", "port": mllp, **extra}
    return settings


def both_channels(webhook: int, mllp: int, **extra: Any) -> dict[str, Any]:
    return delivery_settings(webhook, mllp, **extra)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(SAFETY):
        while not await check():
            await asyncio.sleep(0.02)


async def start(tmp_path: Path, delivery: dict[str, Any], **overrides: Any) -> Service:
    service = Service(service_settings(tmp_path, delivery=delivery, **overrides))
    await service.start()
    return service


async def send(service: Service, *texts: str) -> list[str]:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        return [await client.send(text.encode()) for text in texts]


async def delivered(service: Service, alert_id: str, channels: int = 2) -> None:
    async def done() -> bool:
        rows = await service.store.desk.deliveries(alert_id)
        return len(rows) == channels and all(r.status == "delivered" for r in rows)

    await until(done)


def got(webhook: WebhookReceiver, mllp: MllpReceiver) -> tuple[list[str], list[str]]:
    """The alert ids each receiver was sent (HL7: the first 20 characters)."""
    return (
        [json.loads(post.body)["id"] for post in webhook.received],
        [str(hl7.parse(text).segment("MSH")[10]) for text in mllp.received],
    )


async def test_a_t_message_on_the_default_config_is_refused_and_raises_nothing(
    tmp_path: Path,
) -> None:
    webhook, mllp = WebhookReceiver(), MllpReceiver()
    await webhook.start()
    await mllp.start()
    service = await start(tmp_path, both_channels(webhook.port, mllp.port))
    try:
        [ack] = await send(service, dose("MRN700", pid="T"))
        assert "MSA|AR|RX-MRN700|MSH-11 processing id 'T' (training/test) refused" in ack
        assert "|202^Unsupported processing id^HL70357|" in ack
        assert await service.store.list_alerts() == []
        # a real alert after it goes out: the workers run, and had nothing else to send
        [ack] = await send(service, dose("MRN701"))
        assert "MSA|AA|" in ack
        [real] = await service.store.list_alerts()
        await delivered(service, real.alert.id)
    finally:
        await service.stop()
        await webhook.stop()
        await mllp.stop()
    assert got(webhook, mllp) == ([real.alert.id], [real.alert.id[:20]])


async def test_with_t_accepted_its_alert_is_marked_test_and_not_delivered(
    tmp_path: Path,
) -> None:
    webhook, mllp = WebhookReceiver(), MllpReceiver()
    await webhook.start()
    await mllp.start()
    service = await start(
        tmp_path,
        both_channels(webhook.port, mllp.port),
        ingest={"processing_ids": ["P", "T"]},
    )
    try:
        acks = await send(service, dose("MRN710", pid="T"), SCREEN.format(mrn="MRN710", pid="T"))
        assert all("MSA|AA|" in ack for ack in acks)
        tests = await service.store.list_alerts(patient="MRN710^HOSP")
        assert len(tests) == 2 and all(a.alert.test for a in tests)
        # a real alert after them is delivered: by then the test ones would have been too
        await send(service, dose("MRN711"))
        [real] = await service.store.list_alerts(patient="MRN711^HOSP")
        await delivered(service, real.alert.id)
        for alert in tests:
            assert await service.store.desk.deliveries(alert.alert.id) == []
        async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as http:
            await check_the_api(http, [a.alert.id for a in tests], real.alert.id)
    finally:
        await service.stop()
        await webhook.stop()
        await mllp.stop()
    assert got(webhook, mllp) == ([real.alert.id], [real.alert.id[:20]])


async def check_the_api(http: aiohttp.ClientSession, tests: list[str], real: str) -> None:
    async def get(path: str) -> Any:
        async with http.get(path) as resp:
            assert resp.status == 200, (path, await resp.text())
            return await resp.json()

    queue = await get("/api/alerts")  # the default queue: production only
    assert [v["id"] for v in queue["alerts"]] == [real]
    assert queue["alerts"][0]["alert"]["test"] is False
    only = await get("/api/alerts?test=only")
    assert sorted(v["id"] for v in only["alerts"]) == sorted(tests)
    both = await get("/api/alerts?test=include")
    assert len(both["alerts"]) == 3
    view = await get(f"/api/alerts/{tests[0]}")
    assert (view["alert"]["test"], view["alert"]["processing_id"]) == (True, "T")
    patient = quote("MRN710^HOSP", safe="")
    assert view["links"]["patient"] == f"/api/patients/{patient}?processing_id=T"
    test_world = await get(view["links"]["patient"])
    assert [e["drug"] for e in test_world["exposures"]] == ["daratumumab_iv"]
    assert sorted(v["id"] for v in test_world["alerts"]) == sorted(tests)
    async with http.get(f"/api/patients/{patient}") as resp:  # production knows nothing
        assert resp.status == 404
    meta = await get("/api/meta")
    assert (meta["counts"], meta["test_counts"]) == ({"open": 1}, {"open": 2})
    body = json.dumps({"reason": "test feed", "hours": 4})
    headers = {"Content-Type": "application/json"}
    async with http.post(f"/api/alerts/{tests[0]}/snooze", data=body, headers=headers) as resp:
        assert resp.status == 409  # a snooze would hold back the patient's real alerts
    async with http.get("/api/alerts?test=maybe") as resp:
        assert resp.status == 400


async def test_a_channel_that_takes_test_alerts_gets_them_marked(tmp_path: Path) -> None:
    webhook, mllp = WebhookReceiver(), MllpReceiver()
    await webhook.start()
    await mllp.start()
    service = await start(
        tmp_path,
        both_channels(webhook.port, mllp.port, test_alerts=True),
        ingest={"processing_ids": ["T"]},  # a test instance: production messages refused
    )
    try:
        [refused] = await send(service, dose("MRN720"))
        assert "MSA|AR|" in refused and "this interface takes T only" in refused
        await send(service, dose("MRN721", pid="T"))
        [test] = await service.store.list_alerts()
        await delivered(service, test.alert.id)
    finally:
        await service.stop()
        await webhook.stop()
        await mllp.stop()
    [post] = webhook.received
    assert (json.loads(post.body)["test"], json.loads(post.body)["processing_id"]) == (True, "T")
    [oru] = mllp.received
    assert str(hl7.parse(oru).segment("MSH")[11]) == "T"


async def test_a_receiver_decoding_by_msh_18_reads_a_non_ascii_location(tmp_path: Path) -> None:
    mllp = MllpReceiver(strict_charset=True)  # ASCII unless MSH-18 says otherwise
    await mllp.start()
    service = await start(tmp_path, delivery_settings(mllp=mllp.port))
    try:
        await send(service, dose("MRN730", location="HÄMONK"))
        [alert] = await service.store.list_alerts()
        assert alert.alert.location == "HÄMONK"
        await delivered(service, alert.alert.id, channels=1)
    finally:
        await service.stop()
        await mllp.stop()
    assert mllp.undecodable == []
    [oru] = mllp.received
    message = hl7.parse(oru)
    assert str(message.segment("MSH")[18]) == "UNICODE UTF-8"
    assert str(message.segment("PV1")[3]) == "HÄMONK"
