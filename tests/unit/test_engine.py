"""The engine on hand-built facts: windows, panels with bare antigen names, merges, idempotence."""

from __future__ import annotations

from datetime import datetime

import pytest

from lisguard.domain.alerts import Recommendation, RuleId
from lisguard.domain.context import add_months
from lisguard.domain.engine import evaluate
from lisguard.domain.facts import (
    ClinicalMessage,
    Coded,
    LabOrder,
    Medication,
    MedicationAction,
    MessageKey,
    Observation,
    PatientId,
)
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.domain.patient import PatientState

PT = PatientId("MRN1", "HOSP")


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def msg(cid: str, when: datetime, **kw: object) -> ClinicalMessage:
    return ClinicalMessage(
        key=MessageKey("APP", "FAC", cid),
        message_type="X",
        version="2.5.1",
        time=when,
        patient=kw.pop("patient", PT),
        **kw,  # type: ignore[arg-type]
    )


def dose(cid: str, when: datetime) -> ClinicalMessage:
    med = Medication(
        MedicationAction.ADMINISTRATION,
        (Coded("J9145", "daratumumab", "HCPCS"),),
        when,
        "RX1",
        "RXA-5",
    )
    return msg(cid, when, medications=(med,))


def screen(cid: str, when: datetime, order: str = "TS1") -> ClinicalMessage:
    lab = LabOrder(order, Coded("890-4", "Antibody screen", "LN"), Coded(), when, False, False)
    return msg(cid, when, lab_orders=(lab,))


def run(kb: KnowledgeBase, *messages: ClinicalMessage) -> tuple[list[str], dict[str, PatientState]]:
    states: dict[str, PatientState] = {}
    rules: list[str] = []
    for m in messages:
        out = evaluate(m, states, kb)
        states.update(out.states)
        rules.extend(f"{a.rule.value}:{a.order}" for a in out.alerts)
    return rules, states


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (datetime(2026, 1, 31), 1, datetime(2026, 2, 28)),
        (datetime(2026, 8, 31, 9), 6, datetime(2027, 2, 28, 9)),
        (datetime(2025, 12, 15), 12, datetime(2026, 12, 15)),
    ],
)
def test_add_months(start: datetime, months: int, end: datetime) -> None:
    assert add_months(start, months) == end


def test_window_edges(kb: KnowledgeBase) -> None:
    d = datetime(2026, 1, 10, 9)
    rules, _ = run(
        kb,
        dose("D1", d),
        screen("S1", datetime(2026, 7, 10, 9), "A"),
        screen("S2", datetime(2026, 7, 10, 9, 1), "B"),
        screen("S0", datetime(2026, 1, 9), "C"),
    )
    assert rules == ["baseline-workup:", "bb-serology:A"]  # last minute in, one past out, before


def test_same_order_alerts_once(kb: KnowledgeBase) -> None:
    d = datetime(2026, 1, 10)
    rules, _ = run(
        kb, dose("D1", d), screen("S1", datetime(2026, 2, 1)), screen("S2", datetime(2026, 2, 2))
    )
    assert rules == ["baseline-workup:", "bb-serology:TS1"]


def test_panel_with_bare_antigen_names_sets_k_status(kb: KnowledgeBase) -> None:
    when = datetime(2025, 12, 1)
    panel = LabOrder(
        "PH1",
        Coded("PHENO", "RBC extended phenotype", "L"),
        Coded(),
        when,
        True,
        False,
        observations=(
            Observation(Coded("K", "K", "L"), Coded(), "CWE", ("POS",), when),
            Observation(Coded("E", "E", "L"), Coded(), "CWE", ("NEG",), when),
        ),
    )
    rules, states = run(
        kb,
        msg("P1", when, lab_orders=(panel,)),
        dose("D1", datetime(2026, 1, 5)),
        screen("S1", datetime(2026, 2, 1)),
    )
    state = states[PT.key]
    assert state.k_positive is True
    # no baseline type & screen (typing on file); the HBV screen is still due (for the clinic)
    assert rules == ["baseline-workup:", "bb-serology:TS1"]


def test_bare_k_outside_a_panel_is_potassium(kb: KnowledgeBase) -> None:
    when = datetime(2025, 12, 1)
    chem = LabOrder(
        "CH1",
        Coded("BMP", "Basic metabolic panel", "L"),
        Coded(),
        when,
        True,
        False,
        observations=(Observation(Coded("K", "K", "L"), Coded(), "NM", ("4.1",), when),),
    )
    _, states = run(kb, msg("C1", when, lab_orders=(chem,)))
    assert PT.key not in states or states[PT.key].k_positive is None


def test_merge_moves_exposure_and_alert_history(kb: KnowledgeBase) -> None:
    tmp = PatientId("TMP9", "HOSP")
    d = datetime(2026, 1, 10)
    first = dose("D1", d)
    first = msg("D1", d, patient=tmp, medications=first.medications)
    merge = msg("M1", datetime(2026, 1, 11), merged_from=(tmp,))
    rules, states = run(
        kb, first, merge, dose("D2", datetime(2026, 1, 20)), screen("S", datetime(2026, 2, 1))
    )
    assert rules == ["baseline-workup:", "bb-serology:TS1"]  # baseline not raised twice
    # the retired identifier stays behind as an alias of the survivor, holding nothing
    assert states[tmp.key] == PatientState(key=tmp.key, alias_of=PT.key)
    assert set(states[PT.key].exposures) == {"daratumumab_iv"}
    assert states[PT.key].merged_from == [tmp.key]


def test_recommendations_follow_state(kb: KnowledgeBase) -> None:
    d = datetime(2026, 1, 10)
    state = PatientState(key=PT.key, k_positive=True)
    out = evaluate(dose("D1", d), {PT.key: state}, kb)
    out2 = evaluate(screen("S1", datetime(2026, 1, 20)), out.states, kb)
    [alert] = out2.alerts
    assert alert.rule is RuleId.BB_SEROLOGY
    assert alert.recommendations == (Recommendation.DTT_TREATED_REAGENT_CELLS,)


def test_message_without_patient_changes_nothing(kb: KnowledgeBase) -> None:
    out = evaluate(msg("N1", datetime(2026, 1, 1), patient=None), {}, kb)
    assert (out.states, out.alerts) == ({}, [])


def test_mention_covers_the_sample_ordered_in_the_same_message(kb: KnowledgeBase) -> None:
    drawn = datetime(2026, 3, 2, 7, 50)
    lab = LabOrder(
        "TS9",
        Coded("890-4", "Antibody screen", "LN"),
        Coded(),
        drawn,
        False,
        False,
        clinical_info="Pt on Darzalex Faspro q4wk",
    )
    rules, states = run(kb, msg("M9", datetime(2026, 3, 2, 8, 15), lab_orders=(lab,)))
    assert rules == ["bb-serology:TS9"]
    assert states[PT.key].exposures["daratumumab_sc"].first_point == drawn


def test_negated_mention_is_not_an_exposure(kb: KnowledgeBase) -> None:
    when = datetime(2026, 3, 2)
    lab = LabOrder(
        "TS8",
        Coded("890-4", "Antibody screen", "LN"),
        Coded(),
        when,
        False,
        False,
        notes=("No daratumumab history",),
    )
    rules, states = run(kb, msg("M8", when, lab_orders=(lab,)))
    assert rules == []
    assert PT.key not in states or not states[PT.key].exposures
