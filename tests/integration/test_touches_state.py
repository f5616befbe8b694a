"""`touches_state` lets the service skip loading and evaluating a patient's state. It may only
say "no" for a message that the full evaluation would leave without any effect: checked here on
every message of every scenario, with the state each patient has at that point of the feed."""

from __future__ import annotations

from datetime import datetime

from lisguard.domain.engine import _evaluate, evaluate, touches_state
from lisguard.domain.facts import ClinicalMessage, Coded, LabOrder, MessageKey, PatientId
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.domain.patient import PatientState
from lisguard.domain.rules import DEFAULT_RULES
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import parse
from lisguard.services import CLINICAL_FAMILIES
from tests.conftest import SAMPLES


def test_untouched_messages_would_change_nothing() -> None:
    kb = load_knowledge_base()
    touched = untouched = 0
    for scenario in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        states: dict[str, PatientState] = {}
        for path in sorted(scenario.glob("*.hl7")):
            for text in split_messages(decode_bytes(path.read_bytes())):
                message = parse(text)
                if message.message_type.partition("^")[0] not in CLINICAL_FAMILIES:
                    continue
                clinical = to_clinical(message)
                if clinical.patient is None:
                    continue
                full = _evaluate(clinical, states, kb, DEFAULT_RULES)
                if touches_state(clinical, kb):
                    touched += 1
                else:
                    untouched += 1
                    assert (full.states, full.alerts, full.changes) == ({}, [], []), (
                        path,
                        clinical.key,
                    )
                outcome = evaluate(clinical, states, kb)
                assert outcome.alerts == full.alerts
                states.update(outcome.states)
    assert touched > 20 and untouched > 5  # both paths were exercised


def test_a_cbc_for_a_patient_on_therapy_is_untouched_and_a_screen_is_not() -> None:
    kb = load_knowledge_base()
    patient = PatientId("MRN1", "HOSP")

    def order(code: str, text: str) -> ClinicalMessage:
        return ClinicalMessage(
            key=MessageKey("LAB", "HOSP", code),
            message_type="ORM^O01",
            version="2.5.1",
            time=datetime(2026, 3, 1),
            patient=patient,
            lab_orders=(
                LabOrder(
                    order_id="O1",
                    service=Coded(code, text, "L"),
                    alt_service=Coded(),
                    time=datetime(2026, 3, 1),
                    resulted=False,
                    cancelled=False,
                ),
            ),
        )

    assert not touches_state(order("CBC", "COMPLETE BLOOD COUNT"), kb)
    assert touches_state(order("BBTS", "TYPE AND SCREEN"), kb)
