"""Webhook and HL7 delivery against real local receivers: a receiver that is down for a while
gets each alert exactly once after it comes back, also when lisguard restarts in between;
signatures, payloads, and what AE/AR and HTTP statuses mean."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import hl7  # python-hl7: an independent reader of what lisguard sends
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from lisguard.app import Service
from lisguard.store.desk import OutboxItem
from lisguard.transport.mllp import MllpClient
from tests.conftest import service_settings
from tests.e2e.receivers import MllpReceiver, Post, WebhookReceiver

SAFETY = 30.0  # never an assertion: a hung test fails instead of blocking the suite
SECRET = "whsec_" + base64.b64encode(b"32 bytes shared w/ paging system").decode()
FAST_RETRY = {"initial_seconds": 0.05, "max_seconds": 0.2}

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|SCR-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W^12^B\r"
    "ORC|NW|TS-{mrn}\r"
    "OBR|1|TS-{mrn}||890-4^Antibody screen^LN|||20260302081000\r"
)


def delivery_settings(channel: str, port: int, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"poll_seconds": 0.05, "retry": FAST_RETRY}
    if channel == "webhook":
        url = f"http://127.0.0.1:{port}/hook"
        settings["webhook"] = {"enabled": True, "url": url, "secret": SECRET, **extra}
    else:
        settings["hl7"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": port,
            "receiving_application": "LIS",
            "ack_timeout_seconds": 5,
            **extra,
        }
    return settings


async def start_service(tmp_path: Path, delivery: dict[str, Any]) -> Service:
    service = Service(service_settings(tmp_path, delivery=delivery))
    await service.start()
    return service


async def raise_alerts(service: Service, mrn: str) -> list[str]:
    """Dose (baseline-workup alert) then antibody screen (bb-serology alert), over MLLP."""
    assert service.mllp_port
    ids: list[str] = []
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in (DOSE.format(mrn=mrn), SCREEN.format(mrn=mrn)):
            ack = await client.send(text.encode())
            assert "MSA|AA|" in ack
    for alert in await service.store.list_alerts(patient=f"{mrn}^HOSP"):
        ids.append(alert.alert.id)
    assert len(ids) == 2
    return ids


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(SAFETY):
        while not await check():
            await asyncio.sleep(0.02)


async def rows(service: Service, ids: list[str]) -> list[OutboxItem]:
    return [d for alert_id in ids for d in await service.store.desk.deliveries(alert_id)]


async def one_alert(service: Service, mrn: str) -> str:
    """A first dose: one baseline-workup alert."""
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        assert "MSA|AA|" in await client.send(DOSE.format(mrn=mrn).encode())
    [alert] = await service.store.list_alerts(patient=f"{mrn}^HOSP")
    return alert.alert.id


def delivered_ids(channel: str, receiver: WebhookReceiver | MllpReceiver) -> list[str]:
    """The alert id of every delivery the receiver got (HL7: the first 20 characters)."""
    if isinstance(receiver, WebhookReceiver):
        return [json.loads(post.body)["id"] for post in receiver.received]
    return [str(hl7.parse(text).segment("MSH")[10]) for text in receiver.received]


def receiver_for(channel: str) -> WebhookReceiver | MllpReceiver:
    return WebhookReceiver() if channel == "webhook" else MllpReceiver()


@pytest.mark.parametrize("channel", ["webhook", "hl7"])
async def test_receiver_down_for_a_while_gets_each_alert_once(tmp_path: Path, channel: str) -> None:
    receiver = receiver_for(channel)
    service = await start_service(tmp_path, delivery_settings(channel, receiver.port))
    try:
        ids = await raise_alerts(service, "MRN500")

        async def retried() -> bool:  # the receiver is down: refused, retried with backoff
            return all(r.attempts >= 3 and r.status == "pending" for r in await rows(service, ids))

        await until(retried)
        assert all(
            "Connect" in r.last_error or "Refused" in r.last_error for r in await rows(service, ids)
        )
        await receiver.start()

        async def delivered() -> bool:
            return all(r.status == "delivered" for r in await rows(service, ids))

        await until(delivered)
    finally:
        await service.stop()  # workers end: nothing more can be sent after this
        await receiver.stop()
    expected = sorted(i if channel == "webhook" else i[:20] for i in ids)
    assert sorted(delivered_ids(channel, receiver)) == expected  # each alert exactly once
    audit = [e.event for e in await _audit(tmp_path) if e.event.kind == "alert.delivered"]
    assert sorted(e.subject for e in audit) == sorted(ids)


@pytest.mark.parametrize("channel", ["webhook", "hl7"])
async def test_a_restart_while_the_receiver_is_down_loses_nothing(
    tmp_path: Path, channel: str
) -> None:
    receiver = receiver_for(channel)
    first = await start_service(tmp_path, delivery_settings(channel, receiver.port))
    try:
        ids = await raise_alerts(first, "MRN501")

        async def tried() -> bool:
            return all(r.attempts >= 1 for r in await rows(first, ids))

        await until(tried)
    finally:
        await first.stop()  # graceful: one last try, receiver still down
    await receiver.start()
    second = await start_service(tmp_path, delivery_settings(channel, receiver.port))
    try:

        async def delivered() -> bool:
            return all(r.status == "delivered" for r in await rows(second, ids))

        await until(delivered)
    finally:
        await second.stop()
        await receiver.stop()
    expected = sorted(i if channel == "webhook" else i[:20] for i in ids)
    assert sorted(delivered_ids(channel, receiver)) == expected


async def _audit(tmp_path: Path) -> list[Any]:
    from lisguard.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'lisguard.db'}")
    await store.open()
    try:
        return await store.list_audit(limit=10_000)
    finally:
        await store.close()


async def test_webhook_body_and_signature(tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret=SECRET)  # refuses what Webhook.verify refuses
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("webhook", receiver.port))
    try:
        ids = await raise_alerts(service, "MRN502")

        async def delivered() -> bool:
            return len(receiver.received) == 2

        await until(delivered)
        assert receiver.refused == []
        assert service.http_port
        for post in receiver.received:
            # the deprecated header, kept for this release
            expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
            assert post.headers["X-Lisguard-Signature"] == expected
            body = json.loads(post.body)
            assert post.headers["Idempotency-Key"] == post.headers["webhook-id"] == body["id"]
            stored = await service.store.get_alert(body["id"])
            assert stored is not None
            # the alert as `lisguard check` prints it, plus status, count, time and links
            extras = {k: body.pop(k) for k in ("status", "count", "created_at", "links")}
            assert body == stored.alert.to_json_dict()
            assert extras["links"]["self"] == f"http://127.0.0.1:8080/api/alerts/{body['id']}"
            assert extras["links"]["patient"].endswith("/api/patients/MRN502%5EHOSP")
            assert extras["count"] == 1
        assert sorted(json.loads(p.body)["id"] for p in receiver.received) == sorted(ids)
    finally:
        await service.stop()
        await receiver.stop()


def _resigned(post: Post, timestamp: int) -> dict[str, str]:
    """The post's headers signed again with another timestamp, as lisguard would have sent it
    then (the reference library signs: independent of lisguard's signing code)."""
    when = datetime.fromtimestamp(timestamp, UTC)
    sig = Webhook(SECRET).sign(post.headers["webhook-id"], when, post.body.decode())
    return {**post.headers, "webhook-timestamp": str(timestamp), "webhook-signature": sig}


async def test_webhook_replay_and_tampering_are_refused(tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret=SECRET)
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("webhook", receiver.port))
    try:
        await one_alert(service, "MRN505")

        async def delivered() -> bool:
            return len(receiver.received) == 1

        await until(delivered)
    finally:
        await service.stop()
    [post] = receiver.received
    verifier = Webhook(SECRET)
    assert verifier.verify(post.body, post.headers)["id"] == post.headers["webhook-id"]
    old = int(post.headers["webhook-timestamp"]) - 6 * 60  # past the verifier's 5 minutes
    tampered = json.dumps({**json.loads(post.body), "status": "resolved"}).encode()
    replayed = _resigned(post, old)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(post.body, replayed)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(tampered, post.headers)
    # a timestamp moved forward without the secret: the signature no longer matches
    moved = {**post.headers, "webhook-timestamp": str(int(post.headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationError):
        verifier.verify(post.body, moved)
    # and the receiver, over HTTP, refuses them while still taking the genuine request
    clean = _strip(post.headers)
    try:
        async with aiohttp.ClientSession() as http:
            for body, headers, status in (
                (post.body, _strip(replayed), 401),
                (tampered, clean, 401),
                (post.body, clean, 200),  # a resend: the receiver deduplicates on webhook-id
            ):
                async with http.post(receiver.url, data=body, headers=headers) as response:
                    assert response.status == status
    finally:
        await receiver.stop()
    assert [reason for _, reason in receiver.refused] == [
        "Message timestamp too old",
        "No matching signature found",
    ]
    assert len({p.headers["webhook-id"] for p in receiver.received}) == 1


HOP_HEADERS = frozenset({"host", "content-length", "user-agent", "accept", "accept-encoding"})


def _strip(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


@pytest.mark.parametrize(
    ("statuses", "outcome", "posts"),
    [([503, 429, 200], "delivered", 3), ([400], "failed", 1), ([410], "failed", 1)],
)
async def test_webhook_statuses(
    tmp_path: Path, statuses: list[int], outcome: str, posts: int
) -> None:
    receiver = WebhookReceiver(statuses=iter(statuses), secret=SECRET)
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("webhook", receiver.port))
    try:
        alert = await one_alert(service, "MRN503")

        async def settled() -> bool:
            return {r.status for r in await rows(service, [alert])} <= {"delivered", "failed"}

        await until(settled)
        [row] = await rows(service, [alert])
        assert (row.status, row.attempts) == (outcome, posts)
        # every retry verifies and carries the same webhook-id: the receiver can deduplicate
        assert len(receiver.received) == posts and not receiver.refused
        assert {p.headers["webhook-id"] for p in receiver.received} == {alert}
    finally:
        await service.stop()
        await receiver.stop()


@pytest.mark.parametrize(
    ("codes", "policy", "outcome", "sent"),
    [
        (["AR", "AR", "AA"], {}, "delivered", 3),  # AR: retry (default)
        (["AE"], {}, "failed", 1),  # AE: the content is refused, give up (default)
        (["AE", "CA"], {"on_ae": "retry"}, "delivered", 2),
        (["CR"], {"on_ar": "fail"}, "failed", 1),
    ],
)
async def test_hl7_ack_codes_follow_the_policy(
    tmp_path: Path, codes: list[str], policy: dict[str, str], outcome: str, sent: int
) -> None:
    receiver = MllpReceiver(codes=itertools.chain(codes))
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("hl7", receiver.port, **policy))
    try:
        alert = await one_alert(service, "MRN504")

        async def settled() -> bool:
            return {r.status for r in await rows(service, [alert])} <= {"delivered", "failed"}

        await until(settled)
        [row] = await rows(service, [alert])
        assert (row.status, row.attempts, len(receiver.received)) == (outcome, sent, sent)
        assert row.last_error.startswith(codes[-1]) or outcome == "delivered"
    finally:
        await service.stop()
        await receiver.stop()


async def test_hl7_oru_carries_the_alert(tmp_path: Path) -> None:
    receiver = MllpReceiver()
    await receiver.start()
    service = await start_service(tmp_path, delivery_settings("hl7", receiver.port))
    try:
        ids = await raise_alerts(service, "MRN505")

        async def delivered() -> bool:
            return len(receiver.received) == 2

        await until(delivered)
        screen = next(
            a.alert
            for a in await service.store.list_alerts(rule="bb-serology", patient="MRN505^HOSP")
        )
    finally:
        await service.stop()
        await receiver.stop()
    assert screen.id in ids
    text = next(t for t in receiver.received if screen.id in t)
    oru = hl7.parse(text)
    assert str(oru.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(oru.segment("MSH")[10]) == screen.id[:20]
    assert str(oru.segment("MSH")[5]) == "LIS"
    assert str(oru.segment("PID")[3]) == "MRN505^^^HOSP^MR"
    assert str(oru.segment("PV1")[3]) == "4W"
    assert str(oru.segment("OBR")[2]) == screen.order
    obx = {str(s[3][0][0]): s for s in oru.segments("OBX")}
    assert str(obx["LGRULE"][5]) == "bb-serology"
    assert str(obx["LGSEVERITY"][5]) == "high"
    assert str(obx["LGAUDIENCE"][5]) == "blood_bank"
    recs = [str(s[5][0][0]) for s in oru.segments("OBX") if str(s[3][0][0]) == "LGREC"]
    assert recs == [r.value for r in screen.recommendations]
    notes = [str(s[3]) for s in oru.segments("NTE")]
    assert screen.text in notes
