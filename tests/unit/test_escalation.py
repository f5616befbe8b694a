"""Escalation of HIGH alerts nobody acknowledged (lisguard.alerting.escalation): the settings and
their errors, which escalation channels an alert goes to, what the escalated webhook body and
ORU say, the audit event's detail, and the worker against the memory store with a clock the
test moves (no sleeping)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hl7  # python-hl7: an independent reader of the escalated ORU
import pytest
from pydantic import ValidationError

from lisguard.alerting.escalation import EscalationPolicy, EscalationWorker, escalation_channel
from lisguard.alerting.routing import ChannelRoute
from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.hl7v2.outbound import alert_oru
from lisguard.settings import EscalationSettings, Settings
from lisguard.store.base import NewMessage
from lisguard.store.desk import AlertRecord
from lisguard.store.escalation import ESCALATED, EscalatedAlert, Escalation, escalation_event
from lisguard.store.memory import MemoryStore
from lisguard.transport.escalation_delivery import (
    escalated_body,
    escalated_control_id,
    escalated_oru,
    escalation_id,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_alert(
    patient: str = "MRN1",
    *,
    severity: Severity = Severity.HIGH,
    audience: Audience = Audience.BLOOD_BANK,
    location: str = "4W",
    processing_id: str = "P",
) -> Alert:
    key = f"{patient}^HOSP"
    rule = RuleId.BB_SEROLOGY
    return Alert(
        id=alert_id(key, rule, "ORD1", processing_id),
        rule=rule,
        patient=patient,
        patient_authority="HOSP",
        patient_name="DOE, JANE",
        birth_date="1950-01-02",
        message=f"M-{patient}",
        order="ORD1",
        severity=severity,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="Use DTT-treated reagent cells",
        location=location,
        processing_id=processing_id,
        audience=audience,
    )


# ---------------------------------------------------------------- settings


def test_defaults_escalate_after_15_minutes_on_the_pages_only() -> None:
    s = Settings().escalation
    assert (s.enabled, s.after_minutes, s.check_seconds, s.channels) == (True, 15.0, 15.0, [])


def test_the_example_settings_file_shows_the_defaults() -> None:
    example = Settings.load(ROOT / "config" / "lisguard.example.yaml")
    assert example.escalation == Settings().escalation


@pytest.mark.parametrize("key", ["after_minutes", "check_seconds"])
@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_a_bad_time_is_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(escalation={key: value})
    assert f"escalation.{key}" in str(caught.value)


def test_a_fraction_of_a_minute_is_taken() -> None:
    assert Settings(escalation={"after_minutes": 0.02}).escalation.after_minutes == 0.02


def test_an_escalation_channel_must_be_switched_on() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(escalation={"channels": [{"channel": "hl7"}]})
    text = str(caught.value)
    assert "escalation.channels" in text and "delivery.hl7.enabled" in text
    # off, it is not checked: a site may prepare the list before switching escalation on
    Settings(escalation={"enabled": False, "channels": [{"channel": "hl7"}]})


def test_an_unknown_channel_audience_or_key_is_refused() -> None:
    for bad in (
        {"channel": "pager"},
        {"channel": "webhook", "audiences": ["nursing"]},
        {"channel": "webhook", "locations": [" "]},
        {"channel": "webhook", "url": "http://x"},
    ):
        with pytest.raises(ValidationError) as caught:
            EscalationSettings(channels=[bad])
        assert "channels" in str(caught.value)


def test_a_channel_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="webhook listed more than once"):
        EscalationSettings(channels=[{"channel": "webhook"}, {"channel": "webhook"}])


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISGUARD_ESCALATION__AFTER_MINUTES", "0.5")
    monkeypatch.setenv("LISGUARD_DELIVERY__WEBHOOK__ENABLED", "true")
    monkeypatch.setenv("LISGUARD_DELIVERY__WEBHOOK__URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv(
        "LISGUARD_ESCALATION__CHANNELS", '[{"channel": "webhook", "audiences": ["blood_bank"]}]'
    )
    s = Settings().escalation
    assert s.after_minutes == 0.5
    assert [(r.channel, r.audiences) for r in s.channels] == [("webhook", [Audience.BLOOD_BANK])]


# ---------------------------------------------------------------- routing


def test_escalation_channels_follow_audience_and_location() -> None:
    policy = EscalationPolicy(
        timedelta(minutes=15),
        routes=(
            ChannelRoute(escalation_channel("webhook"), audiences=frozenset({Audience.BLOOD_BANK})),
            ChannelRoute(escalation_channel("hl7"), locations=frozenset({"4W"})),
        ),
    )
    assert policy.channels_for(make_alert(location="4w")) == (
        "escalation.webhook",
        "escalation.hl7",
    )
    assert policy.channels_for(make_alert(location="ONC")) == ("escalation.webhook",)
    clinic = make_alert(audience=Audience.CLINIC, location="ONC")
    assert policy.channels_for(clinic) == ()
    assert policy.after_minutes == 15.0


# ---------------------------------------------------------------- what is sent


def record_of(alert: Alert) -> AlertRecord:
    return AlertRecord(alert=alert, message_id=1, created_at=T0)


def test_the_escalated_webhook_body_is_the_alert_marked_escalated() -> None:
    alert = make_alert()
    escalation = Escalation(alert.id, T0 + timedelta(minutes=16), 16.0, ("escalation.webhook",))
    body = json.loads(escalated_body(record_of(alert), escalation, "https://lis.example", 15.0))
    assert body["escalated"] is True
    assert body["escalated_at"] == "2026-03-02T09:16:00+00:00"
    assert (body["open_minutes"], body["escalation_after_minutes"]) == (16.0, 15.0)
    assert (body["id"], body["rule"], body["severity"]) == (alert.id, "bb-serology", "high")
    assert body["links"]["page"] == f"https://lis.example/#alert={alert.id}"
    assert escalation_id(alert) == f"{alert.id}-escalation" != alert.id


def test_the_escalated_oru_has_its_own_control_id_and_says_when() -> None:
    alert = make_alert()
    escalation = Escalation(alert.id, T0 + timedelta(minutes=16, seconds=30), 16.5)
    plain = alert_oru(alert, T0)
    text = escalated_oru(plain, alert, escalation)
    message = hl7.parse(text)
    control = str(message.segment("MSH")[10])
    assert control == escalated_control_id(alert) == "E" + alert.id[:19]
    assert control != str(hl7.parse(plain).segment("MSH")[10])  # never taken for a resend
    assert len(control) <= 20
    obx = [s for s in message if str(s[0]) == "OBX"]
    assert [str(s[1]) for s in obx] == [str(i) for i in range(1, len(obx) + 1)]
    by_code = {str(s[3]).split("^")[0]: s for s in obx}
    assert str(by_code["LGESCALATED"][2]) == "TS"
    assert str(by_code["LGESCALATED"][5]) == "20260302091630+0000"
    assert (str(by_code["LGOPENMIN"][2]), str(by_code["LGOPENMIN"][5])) == ("NM", "16.5")
    assert str(by_code["LGOPENMIN"][6]).startswith("min^")
    assert "LGRULE" in by_code and "LGSEVERITY" in by_code  # the usual content is all there
    assert text.endswith("\r") and "\r\r" not in text


def test_the_audit_event_names_no_more_patient_data_than_alert_raised() -> None:
    alert = make_alert()
    escalation = Escalation(alert.id, T0 + timedelta(minutes=16), 16.0, ("escalation.hl7",))
    event = escalation_event(EscalatedAlert(escalation, alert, T0, "open"), 15.0)
    assert (event.kind, event.subject, event.actor) == (ESCALATED, alert.id, "system")
    assert event.detail["patient"] == "MRN1^HOSP"  # the key, as alert.raised carries it
    assert {k: event.detail[k] for k in ("rule", "severity", "open_minutes", "after_minutes")} == {
        "rule": "bb-serology",
        "severity": "high",
        "open_minutes": 16.0,
        "after_minutes": 15.0,
    }
    assert event.detail["channels"] == ["escalation.hl7"]
    text = json.dumps(event.detail)
    assert "DOE" not in text and "1950" not in text and "DTT" not in text


# ---------------------------------------------------------------- the worker, on a moved clock


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def store_alerts(store: MemoryStore, alerts: list[Alert], at: datetime) -> None:
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|",
                content_hash="0" * 64,
                received_at=at,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{at.timestamp()}"),
            )
        )
        await tx.add_alerts(alerts, message_id=message_id, created_at=at)


async def escalated_events(store: MemoryStore) -> list[str]:
    return [e.event.subject for e in await store.list_audit() if e.event.kind == ESCALATED]


async def test_the_worker_escalates_once_when_the_time_is_up() -> None:
    store = MemoryStore()
    await store.open()
    high, medium = make_alert("A"), make_alert("B", severity=Severity.MEDIUM)
    test_high = make_alert("C", processing_id="T")
    await store_alerts(store, [high, medium, test_high], T0)
    clock = Clock(T0 + timedelta(minutes=14, seconds=59))
    route = ChannelRoute(escalation_channel("webhook"))
    worker = EscalationWorker(
        store, EscalationPolicy(timedelta(minutes=15), routes=(route,)), clock=clock
    )
    told: list[list[str]] = []

    async def listener(found: Sequence[EscalatedAlert]) -> None:
        told.append([e.alert.id for e in found])

    worker.listeners.append(listener)
    assert await worker.check() == []  # a second early
    clock.at = T0 + timedelta(minutes=15)
    [found] = await worker.check()
    assert found.alert.id == high.id and found.escalation.open_minutes == 15.0
    assert await worker.check() == []  # once
    clock.at = T0 + timedelta(hours=3)
    assert await worker.check() == []  # and never again
    assert told == [[high.id]]
    assert await escalated_events(store) == [high.id]
    assert [d.channel for d in await store.desk.deliveries(high.id)] == ["escalation.webhook"]
    assert await store.escalations.marks([high.id, medium.id]) == {
        high.id: found.escalation.escalated_at
    }


async def test_acknowledged_alerts_neither_escalate_nor_stay_on_the_banner() -> None:
    store = MemoryStore()
    await store.open()
    early, late = make_alert("A"), make_alert("B")
    await store_alerts(store, [early, late], T0)
    await store.desk.acknowledge(early.id, by="jo", at=T0 + timedelta(minutes=5))
    clock = Clock(T0 + timedelta(minutes=20))
    worker = EscalationWorker(store, EscalationPolicy(timedelta(minutes=15)), clock=clock)
    assert [e.alert.id for e in await worker.check()] == [late.id]
    assert [e.alert.id for e in await store.escalations.still_open()] == [late.id]
    await store.desk.acknowledge(late.id, by="jo", at=T0 + timedelta(minutes=21))
    assert await store.escalations.still_open() == []
    assert await store.escalations.get(late.id) is not None  # it happened: the record stays


async def test_a_failure_inside_the_escalation_leaves_nothing_behind() -> None:
    store = MemoryStore()
    await store.open()
    first, second = make_alert("A"), make_alert("B")
    await store_alerts(store, [first], T0)
    await store_alerts(store, [second], T0 + timedelta(seconds=1))

    def channels_for(alert: Alert) -> tuple[str, ...]:
        if alert.id == second.id:
            raise RuntimeError("routing bug")
        return ("escalation.webhook",)

    with pytest.raises(RuntimeError):
        await store.escalations.escalate_due(
            now=T0 + timedelta(minutes=30),
            raised_before=T0 + timedelta(minutes=15),
            channels_for=channels_for,
            after_minutes=15,
        )
    assert await store.escalations.get(first.id) is None
    assert await store.desk.deliveries(first.id) == []
    assert await escalated_events(store) == []
