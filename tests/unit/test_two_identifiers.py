"""Two identifiers and the test on every alert: PID-5/PID-7 kept in patient state from the
latest message (an A08/A31 updates a known patient, creates no one), and each alert names the
test as ordered and its collection time."""

from __future__ import annotations

from datetime import datetime

import pytest

from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from tests.unit.test_real_feeds import Feed, hl7


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def pid(mrn: str, name: str = "HALVORSEN^INGRID^M", dob: str = "19520314") -> str:
    return f"PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|F"


def dose(cid: str, mrn: str, when: str, **kw: str) -> str:
    return hl7(
        cid,
        when,
        "RAS^O17",
        pid(mrn, **kw),
        f"ORC|RE|RX-{cid}",
        f"RXA|0|1|{when}||J9145^daratumumab^HCPCS|1100|mg",
    )


def screen(cid: str, mrn: str, when: str, collected: str, **kw: str) -> str:
    return hl7(
        cid,
        when,
        "ORM^O01",
        pid(mrn, **kw),
        f"ORC|NW|BB-{cid}",
        f"OBR|1|BB-{cid}||BBTS^TYPE AND SCREEN^L^890-4^Antibody screen^LN|||{collected}",
    )


def a08(cid: str, mrn: str, when: str, name: str, dob: str = "19520314") -> str:
    return hl7(cid, when, "ADT^A08", "EVN|A08|" + when, pid(mrn, name, dob), "PV1|1|O")


def test_alerts_carry_name_birth_date_and_the_test(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    (baseline,) = feed.send(dose("D1", "M1", "20260301090000"))
    assert (baseline.patient_name, baseline.birth_date) == ("HALVORSEN, INGRID M", "1952-03-14")
    assert (baseline.order_code, baseline.order_text, baseline.collected) == ("", "", None)
    (alert,) = feed.send(screen("S1", "M1", "20260305080000", "20260305074500"))
    assert alert.rule.value == "bb-serology"
    assert (alert.patient_name, alert.birth_date) == ("HALVORSEN, INGRID M", "1952-03-14")
    assert (alert.order_code, alert.order_text) == ("BBTS", "TYPE AND SCREEN")
    assert alert.collected == datetime(2026, 3, 5, 7, 45)


def test_a08_updates_a_known_patient_and_creates_no_one(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "M2", "20260301090000"))
    feed.send(a08("A1", "M2", "20260302100000", "HALVORSEN-BERG^INGRID^M", "19520315"))
    state = feed.states["M2^HOSP"]
    assert (state.name, state.birth_date) == ("HALVORSEN-BERG, INGRID M", "1952-03-15")
    (alert,) = feed.send(
        screen(
            "S1",
            "M2",
            "20260305080000",
            "20260305074500",
            name="HALVORSEN-BERG^INGRID^M",
            dob="19520315",
        )
    )
    assert alert.patient_name == "HALVORSEN-BERG, INGRID M"
    # an A08 for a patient lisguard does not keep stores nothing
    feed.send(a08("A2", "M3", "20260302100000", "NOBODY^KNOWN"))
    assert "M3^HOSP" not in feed.states


def test_an_older_message_never_overwrites_a_newer_name(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "M4", "20260301090000"))
    feed.send(a08("A1", "M4", "20260310100000", "NEWNAME^INGRID"))
    feed.send(a08("A0", "M4", "20260305100000", "OLDNAME^INGRID"))  # arrives late
    assert feed.states["M4^HOSP"].name == "NEWNAME, INGRID"


def test_a_merge_keeps_the_survivors_name(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "TMP9", "20260301090000", name="DOE^JANE"))
    merge = hl7(
        "MG1",
        "20260302100000",
        "ADT^A40",
        "EVN|A40|20260302100000",
        pid("M5", "HALVORSEN^INGRID^M"),
        "MRG|TMP9^^^HOSP^MR",
    )
    feed.send(merge)
    state = feed.states["M5^HOSP"]
    assert (state.name, state.birth_date) == ("HALVORSEN, INGRID M", "1952-03-14")
    (alert,) = feed.send(screen("S1", "TMP9", "20260305080000", "20260305074500", name="DOE^JANE"))
    # a late message under the retired id lands on the survivor, and does not rename it
    assert (alert.patient, alert.patient_name) == ("M5", "HALVORSEN, INGRID M")


def test_the_audit_detail_names_no_value(kb: KnowledgeBase) -> None:
    from lisguard.domain.engine import evaluate
    from lisguard.hl7v2.clinical import to_clinical
    from lisguard.hl7v2.reader import parse

    msg = to_clinical(parse(dose("D1", "M6", "20260301090000")), kb.identity)
    out = evaluate(msg, {}, kb)
    details = [c.detail for c in out.changes if c.kind == "demographics"]
    assert details == ["name and date of birth recorded"]
    assert all("HALVORSEN" not in c.detail and "1952" not in c.detail for c in out.changes)


def test_the_oru_carries_both_identifiers(kb: KnowledgeBase) -> None:
    from lisguard.hl7v2.outbound import alert_oru
    from lisguard.hl7v2.reader import parse

    feed = Feed(kb)
    (alert,) = feed.send(dose("D1", "M7", "20260301090000"))
    oru = parse(alert_oru(alert, datetime(2026, 3, 1, 10)))
    pid_seg = next(s for s in oru.segments if s.name == "PID")
    assert (pid_seg.get(5, 1), pid_seg.get(5, 2), pid_seg.get(5, 3)) == ("HALVORSEN", "INGRID", "M")
    assert pid_seg.get(7) == "19520314"
    assert alert.to_json_dict()["patient_name"] == "HALVORSEN, INGRID M"  # the webhook body
