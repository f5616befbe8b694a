"""MSH-11 (processing id) on its own: what the site takes by default and what a refusal says;
an alert of a test message is marked, has an id of its own and reads back from old payloads;
the ORU it becomes says MSH-11 T, every ORU declares MSH-18 and codes with 99LSG; routing and
the outbox worker never hand a test alert to a production channel."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest
from pydantic import ValidationError

from lisguard.alerting.outbox import TEST_REFUSED, Attempt, OutboxWorker, RetryPolicy
from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.domain.alerts import Alert, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.domain.patient import state_key
from lisguard.hl7v2.ack import build_ack
from lisguard.hl7v2.outbound import alert_oru
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import IngestPolicy, Verdict, read_message
from lisguard.settings import IngestSettings, Settings
from lisguard.store.base import NewMessage
from lisguard.store.desk import AlertRecord
from lisguard.store.memory import MemoryStore
from tests.e2e.receivers import msh18_decode

CREATED = datetime(2026, 3, 2, 8, 16, 5, tzinfo=UTC)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|C1|{pid}|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR\r"
    "ORC|NW|TS1\r"
    "OBR|1|TS1||890-4^Antibody screen^LN|||20260302081000\r"
)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def make_alert(processing_id: str = "P", location: str = "4W") -> Alert:
    return Alert(
        id=alert_id("MRN1^HOSP", RuleId.BB_SEROLOGY, "TS1", processing_id),
        rule=RuleId.BB_SEROLOGY,
        patient="MRN1",
        patient_authority="HOSP",
        message="C1",
        order="TS1",
        severity=Severity.HIGH,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="On daratumumab: use DTT-treated cells.",
        location=location,
        processing_id=processing_id,
    )


# ------------------------------------------------------------------ what the site takes


def test_production_only_is_the_default() -> None:
    assert IngestSettings().processing_ids == ["P"]
    assert IngestPolicy().processing_ids == frozenset({"P"})
    assert Settings().ingest.processing_ids == ["P"]


def test_a_processing_id_outside_table_0103_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="processing_ids"):
        IngestSettings(processing_ids=["P", "X"])
    with pytest.raises(ValidationError):
        IngestSettings(processing_ids=[])


@pytest.mark.parametrize(
    ("pid", "said"), [("T", "'T' (training/test)"), ("D", "'D' (debugging)"), ("X", "'X'")]
)
def test_anything_but_p_is_refused_with_err_202_saying_why(
    kb: KnowledgeBase, pid: str, said: str
) -> None:
    reading = read_message(SCREEN.format(pid=pid), IngestPolicy(), Relevance(kb))
    assert reading.verdict is Verdict.REFUSED and reading.error is not None
    reason = f"MSH-11 processing id {said} refused: this interface takes P only"
    assert reading.error.reason == reason
    ack = build_ack(reading.header, "AR", error=reading.error)
    msa, err = (hl7.parse(ack).segment(name) for name in ("MSA", "ERR"))
    assert str(msa[1]) == "AR" and str(msa[3]) == reason[:80]
    assert str(err[2]) == "MSH^1^11" and str(err[3]) == "202^Unsupported processing id^HL70357"


@pytest.mark.parametrize("pid", ["P", ""])  # an empty MSH-11 is read as production, as before
def test_production_and_unvalued_are_processed_as_production(kb: KnowledgeBase, pid: str) -> None:
    reading = read_message(SCREEN.format(pid=pid), IngestPolicy(), Relevance(kb))
    assert reading.verdict is Verdict.PROCESS
    assert reading.clinical is not None and reading.clinical.processing_id == "P"


def test_a_site_that_takes_t_reads_it_as_a_test_message(kb: KnowledgeBase) -> None:
    policy = IngestPolicy(processing_ids=frozenset({"P", "T"}))
    reading = read_message(SCREEN.format(pid="T"), policy, Relevance(kb))
    assert reading.verdict is Verdict.PROCESS and reading.clinical is not None
    assert (reading.clinical.processing_id, reading.clinical.test) == ("T", True)


# ------------------------------------------------------------------ the alert


def test_a_test_alert_is_marked_in_its_json_and_has_an_id_of_its_own() -> None:
    real, test = make_alert("P"), make_alert("T")
    assert real.to_json_dict()["processing_id"] == "P" and real.to_json_dict()["test"] is False
    assert test.to_json_dict()["processing_id"] == "T" and test.to_json_dict()["test"] is True
    # production ids are what they always were; a test one never takes a real one's place
    assert real.id == alert_id("MRN1^HOSP", RuleId.BB_SEROLOGY, "TS1")
    assert len({real.id, test.id, make_alert("D").id}) == 3
    assert Alert.model_validate_json(test.model_dump_json()) == test  # as the stores keep it


def test_an_alert_stored_before_processing_ids_reads_as_production() -> None:
    old = make_alert().model_dump(mode="json")
    del old["processing_id"], old["test"]
    alert = Alert.model_validate(old)
    assert (alert.processing_id, alert.test) == ("P", False)


def test_test_state_lives_under_a_key_no_patient_key_can_be() -> None:
    assert state_key("MRN1^HOSP") == "MRN1^HOSP"
    scoped = {state_key("MRN1^HOSP", pid) for pid in ("T", "D")}
    assert len(scoped) == 2 and not scoped & {"MRN1^HOSP"}
    assert all(k != k.strip() for k in scoped)  # identifiers are stripped: never one of these


# ------------------------------------------------------------------ the ORU


def test_the_oru_of_a_test_alert_says_msh_11_t_and_of_a_real_one_p() -> None:
    for pid in ("P", "T", "D"):
        assert str(hl7.parse(alert_oru(make_alert(pid), CREATED)).segment("MSH")[11]) == pid


def test_the_oru_declares_utf8_and_a_receiver_decoding_by_msh_18_reads_it() -> None:
    raw = alert_oru(make_alert(location="HÄMONK"), CREATED).encode()  # as hl7_outbound sends it
    assert str(hl7.parse(raw.decode()).segment("MSH")[18]) == "UNICODE UTF-8"
    theirs = hl7.parse(msh18_decode(raw))  # ASCII if MSH-18 said nothing: a UnicodeDecodeError
    assert str(theirs.segment("PV1")[3]) == "HÄMONK"


def test_our_codes_name_a_table_0396_local_coding_system() -> None:
    oru = hl7.parse(alert_oru(make_alert(), CREATED))
    obr = oru.segment("OBR")
    assert str(obr[4]) == "LGALERT^Therapy interference alert^99LSG"
    assert str(obr[3]) == f"{make_alert().id}^LISGUARD"  # EI: an application namespace
    for obx in oru.segments("OBX"):
        assert str(obx[3][0][2]) == "99LSG"
        if str(obx[2]) == "CWE":
            assert str(obx[5][0][0]) == "DTT_TREATED_REAGENT_CELLS"
            assert str(obx[5][0][2]) == "99LSG"
    assert "^LISGUARD" not in str(oru).replace(f"{make_alert().id}^LISGUARD", "")


# ------------------------------------------------------------------ routing and delivery


async def stored(store: MemoryStore, alert: Alert, routing: AlertRouting) -> None:
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(b"x", alert.id, CREATED, "ack", "AA", MessageKey("A", "B", alert.id))
        )
        await tx.add_alerts([alert], message_id=message_id, created_at=CREATED)
        await routing.route(store.desk, tx, [alert], CREATED)


async def test_routing_gives_a_test_alert_rows_only_on_channels_that_take_test_alerts() -> None:
    store = MemoryStore()
    await store.open()
    routing = AlertRouting(
        channels=(ChannelRoute("webhook"), ChannelRoute("hl7", test_alerts=True))
    )
    real, test = make_alert("P"), make_alert("T")
    await stored(store, real, routing)
    await stored(store, test, routing)
    assert [d.channel for d in await store.desk.deliveries(real.id)] == ["hl7", "webhook"]
    assert [d.channel for d in await store.desk.deliveries(test.id)] == ["hl7"]
    # the real alert did not collapse into the test one (same patient, rule, advice), nor back
    for alert in (real, test):
        record = await store.desk.get(alert.id)
        assert record is not None and (record.status, record.lead_id) == ("open", None)


class ProductionChannel:
    name = "webhook"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def deliver(self, record: AlertRecord) -> Attempt:
        self.calls.append(record.alert.id)
        return Attempt(True)

    async def close(self) -> None:
        return None


async def test_the_worker_never_sends_a_test_alert_to_a_production_channel() -> None:
    store = MemoryStore()
    await store.open()
    test = make_alert("T")
    # a row however it came (say, routed by a release that did not know test alerts)
    await stored(store, test, AlertRouting(channels=(ChannelRoute("webhook", test_alerts=True),)))
    channel = ProductionChannel()
    worker = OutboxWorker(store, channel, RetryPolicy(), clock=lambda: CREATED)
    await worker.deliver_due()
    assert channel.calls == []
    [row] = await store.desk.deliveries(test.id)
    assert (row.status, row.last_error) == ("failed", TEST_REFUSED)
