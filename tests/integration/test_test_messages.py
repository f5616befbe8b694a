"""Test messages (MSH-11 T) through the real Ingestor, on every backend: refused by default;
where a site takes them, their alerts are stored marked test, kept out of production's queue,
counts and outbox, and their patient state never mixes with production's - a test dose neither
causes nor silences a real alert, and a real dose does not make a test scenario alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.alerting.summary import patient_summary
from lisguard.domain.alerts import Alert
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.domain.patient import state_key
from lisguard.intake import IngestPolicy
from lisguard.services import Ingestor
from lisguard.store.base import Store
from lisguard.store.desk import AlertQuery
from lisguard.web.reports import daily_report

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATIENT = "MRN1^HOSP"
DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|{cid}|{pid}|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE\r"
    "ORC|RE|RXO-1\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|{pid}|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W\r"
    "ORC|NW|TS1\r"
    "OBR|1|TS1||890-4^Antibody screen^LN|||20260302081000\r"
)
TAKES_T = IngestPolicy(processing_ids=frozenset({"P", "T"}))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def ingestor(store: Store, kb: KnowledgeBase, policy: IngestPolicy | None = TAKES_T) -> Ingestor:
    routing = AlertRouting(channels=(ChannelRoute("webhook"), ChannelRoute("hl7")))
    return Ingestor(store, kb, policy, clock=lambda: T0, routing=routing)


async def send(ing: Ingestor, template: str, pid: str, cid: str) -> list[Alert]:
    result = await ing.ingest(template.format(pid=pid, cid=cid).encode())
    assert result.outcome == "accepted", result.error
    return result.alerts


async def test_on_the_default_policy_a_t_message_is_refused_and_changes_nothing(
    store: Store, kb: KnowledgeBase
) -> None:
    ing = ingestor(store, kb, policy=None)
    for template, cid in ((DOSE, "TRX1"), (SCREEN, "TS1")):
        result = await ing.ingest(template.format(pid="T", cid=cid).encode())
        assert (result.outcome, result.ack_code, result.alerts) == ("rejected", "AR", [])
        assert "|202^Unsupported processing id^HL70357|" in result.responses[0]
    assert await store.list_alerts() == []
    assert await store.get_patient(PATIENT) is None
    assert await store.get_patient(state_key(PATIENT, "T")) is None
    assert len(await store.list_dead_letters()) == 2  # kept, with the AR sent


async def test_test_alerts_are_marked_and_neither_queued_counted_nor_delivered(
    store: Store, kb: KnowledgeBase
) -> None:
    ing = ingestor(store, kb)
    # a test scenario of two messages alerts as production would: inside the test world
    tests = await send(ing, DOSE, "T", "TRX1") + await send(ing, SCREEN, "T", "TS1")
    assert [(a.rule.value, a.processing_id, a.test) for a in tests] == [
        ("baseline-workup", "T", True),
        ("bb-serology", "T", True),
    ]
    for alert in tests:
        stored = await store.get_alert(alert.id)
        assert stored is not None and stored.alert == alert  # the mark is stored with it
        assert await store.desk.deliveries(alert.id) == []  # no outbox row on any channel
    assert await store.desk.search(AlertQuery(test=False)) == []
    assert {r.alert.id for r in await store.desk.search(AlertQuery(test=True))} == {
        a.id for a in tests
    }
    assert len(await store.desk.search(AlertQuery())) == 2
    assert await store.desk.counts() == {}
    assert await store.desk.counts(test=True) == {"open": 2}
    # the manager's report: the messages came in, but no alert of the bench's was raised
    report = await daily_report(store, T0.date(), T0.date())
    assert report["totals"]["messages"] == {"AA": 2} and report["totals"]["alerts_total"] == 0


async def test_a_test_dose_neither_causes_nor_silences_a_real_alert(
    store: Store, kb: KnowledgeBase
) -> None:
    ing = ingestor(store, kb)
    tests = await send(ing, DOSE, "T", "TRX1") + await send(ing, SCREEN, "T", "TS1")
    # production: the patient is on no drug as far as real messages say
    assert await send(ing, SCREEN, "P", "PS1") == []
    # a real first dose is the patient's first (the test one did not use baseline-workup up)
    [baseline] = await send(ing, DOSE, "P", "PRX1")
    # ...and now the same screen, same order, alerts for real: an id of its own, queued as a
    # lead (not collapsed into the test alert) and delivered
    [serology] = await send(ing, SCREEN, "P", "PS2")
    real = [baseline, serology]
    assert [(a.rule.value, a.test) for a in real] == [
        ("baseline-workup", False),
        ("bb-serology", False),
    ]
    assert not {a.id for a in real} & {a.id for a in tests}
    for alert in real:
        record = await store.desk.get(alert.id)
        assert record is not None and (record.status, record.lead_id) == ("open", None)
        assert [d.channel for d in await store.desk.deliveries(alert.id)] == ["hl7", "webhook"]
    assert await store.desk.counts() == {"open": 2}
    assert await store.desk.counts(test=True) == {"open": 2}
    production = await store.get_patient(PATIENT)
    test_world = await store.get_patient(state_key(PATIENT, "T"))
    assert production is not None and test_world is not None
    assert sorted(production.alerted) == sorted(a.id for a in real)
    assert sorted(test_world.alerted) == sorted(a.id for a in tests)
    # the technologist's patient view: each world with its own alerts only
    summary = await patient_summary(store, kb, PATIENT)
    assert summary is not None and {r.alert.id for r in summary.alerts} == {a.id for a in real}
    summary = await patient_summary(store, kb, PATIENT, "T")
    assert summary is not None and {r.alert.id for r in summary.alerts} == {a.id for a in tests}
    assert [line.drug for line in summary.exposures] == ["daratumumab_iv"]


async def test_a_real_dose_does_not_make_a_test_message_alert(
    store: Store, kb: KnowledgeBase
) -> None:
    ing = ingestor(store, kb)
    [baseline] = await send(ing, DOSE, "P", "PRX1")
    assert not baseline.test
    assert await send(ing, SCREEN, "T", "TS1") == []  # the test world knows no dose
    assert await store.get_patient(state_key(PATIENT, "T")) is None  # nothing it would keep
    assert await store.desk.counts(test=True) == {}
