"""Delivery pieces on their own: the ORU^R01 an alert becomes (read back by two HL7 readers),
the webhook signature, the retry schedule, and the outbox worker's bookkeeping when a channel
crashes or runs out of attempts (memory store, a scripted channel)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import hl7
import pytest

from lisguard.alerting.outbox import Attempt, OutboxWorker, RetryPolicy
from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity
from lisguard.hl7v2.outbound import alert_oru, control_id
from lisguard.hl7v2.reader import parse
from lisguard.store.desk import AlertRecord
from lisguard.store.memory import MemoryStore
from lisguard.transport.webhook import signature, signing_key, standard_headers

CREATED = datetime(2026, 3, 2, 8, 16, 5, tzinfo=UTC)


def tricky_alert() -> Alert:
    return Alert(
        id="0123456789abcdef01234567",
        rule=RuleId.SPEP_IFE,
        patient="MRN|7^x",
        patient_authority="H&S",
        message="LAB1",
        order="ORD~1",
        severity=Severity.MEDIUM,
        recommendations=(Recommendation.MASS_SPEC_MPROTEIN,),
        text="Small IgG-κ band | on daratumumab\\isatuximab ^ check & reflex\nnext line",
        drugs=("daratumumab_iv",),
        event_time=datetime(2026, 3, 2, 7, 55),  # naive: the sender's local time
        location="ONC^INF",
        evidence=(EvidenceItem(message="RX1", location="RXA-5", text="DARZALEX^NDC"),),
    )


def test_oru_escapes_delimiters_and_reads_back() -> None:
    alert = tricky_alert()
    text = alert_oru(alert, CREATED, receiving_application="LIS")
    assert text == alert_oru(alert, CREATED, receiving_application="LIS")  # retries: same bytes
    ours = parse(text)
    assert (ours.message_type, ours.control_id) == ("ORU^R01", control_id(alert))
    pid = next(s for s in ours.segments if s.name == "PID")
    assert (pid.get(3, 1), pid.get(3, 4)) == ("MRN|7^x", "H&S")
    pv1 = next(s for s in ours.segments if s.name == "PV1")
    assert pv1.get(3) == "ONC^INF"
    obr = next(s for s in ours.segments if s.name == "OBR")
    assert (obr.get(2), obr.get(7), obr.get(22)) == (
        "ORD~1",
        "20260302075500",
        "20260302081605+0000",
    )
    notes = [s.get(3) for s in ours.segments if s.name == "NTE"]
    assert notes[0] == "Small IgG-κ band | on daratumumab\\isatuximab ^ check & reflex next line"
    # python-hl7 sees the same structure: no delimiter leaked into the values
    theirs = hl7.parse(text)
    assert len(theirs.segment("PID")[3][0]) == 5  # id, -, -, authority, MR
    obx = [s for s in theirs.segments("OBX")]
    codes = [str(s[3][0][0]) for s in obx]
    assert codes == ["LGRULE", "LGSEVERITY", "LGAUDIENCE", "LGREC", "LGDRUG"]
    assert str(obx[2][5]) == "protein_lab"
    assert str(obx[3][5][0][0]) == "MASS_SPEC_MPROTEIN"


def test_webhook_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"id":"abc"}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) == f"sha256={expected}"
    assert signature("other", body) != signature("k", body)


def test_standard_webhooks_signature_matches_the_reference_vector() -> None:
    # the vector every Standard Webhooks reference library tests its signing against
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    headers = standard_headers(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("whsec_not base64!", "base64"), ("whsec_" + "A" * 20, "24 to 64 bytes")],
)
def test_a_bad_whsec_secret_is_refused(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        signing_key(secret)


def test_a_plain_secret_keys_with_its_bytes() -> None:
    assert signing_key("s3cret") == b"s3cret"


def test_retry_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_seconds=2, max_seconds=60, max_attempts=5)
    assert [policy.delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == 60
    assert not policy.gives_up(4) and policy.gives_up(5)
    assert not RetryPolicy(max_attempts=0).gives_up(10_000)


class ScriptedChannel:
    name = "webhook"

    def __init__(self, *steps: Attempt | Exception) -> None:
        self.steps = list(steps)
        self.calls: list[str] = []

    async def deliver(self, record: AlertRecord) -> Attempt:
        self.calls.append(record.alert.id)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        return None


async def stored_alert(store: MemoryStore) -> str:
    from lisguard.domain.facts import MessageKey
    from lisguard.store.base import NewMessage

    alert = tricky_alert()
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(b"x", "h", CREATED, "ack", "AA", MessageKey("A", "B", "C"))
        )
        await tx.add_alerts([alert], message_id=message_id, created_at=CREATED)
        await AlertRouting(channels=(ChannelRoute("webhook"),)).route(
            store.desk, tx, [alert], CREATED
        )
    return alert.id


class Clock:
    def __init__(self) -> None:
        self.now = CREATED

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("steps", "max_attempts", "status", "error"),
    [
        ((RuntimeError("bug"), Attempt(True)), 0, "delivered", ""),
        ((Attempt(False, detail="HTTP 503"),) * 3, 3, "failed", "HTTP 503"),
        ((Attempt(False, permanent=True, detail="HTTP 400"),), 0, "failed", "HTTP 400"),
    ],
)
async def test_worker_bookkeeping(
    steps: tuple[Attempt | Exception, ...], max_attempts: int, status: str, error: str
) -> None:
    store = MemoryStore()
    await store.open()
    alert_id = await stored_alert(store)
    channel = ScriptedChannel(*steps)
    clock = Clock()
    worker = OutboxWorker(
        store, channel, RetryPolicy(1, 10, max_attempts), clock=clock, lease_seconds=30
    )
    seen: list[str] = []

    async def listener(changed: str) -> None:
        seen.append(changed)

    worker.listeners.append(listener)
    for _ in steps:
        handled, backoff = await worker.deliver_due()
        assert handled == 1
        clock.now += timedelta(seconds=backoff or 0)
    [row] = await store.desk.deliveries(alert_id)
    assert (row.status, row.attempts, row.last_error) == (status, len(steps), error)
    assert channel.calls == [alert_id] * len(steps) and seen == channel.calls
    assert await worker.deliver_due() == (0, None)  # nothing is ever sent again
