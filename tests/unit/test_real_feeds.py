"""Real feeds, read from ER7 through the translator and the engine: identity settings, merge
aliases and links, blood product orders, order questions, Kell notation, isotype wording, flow
MRD scope, one order under one number, routes, anti-CD47. Each positive has its negative."""

from __future__ import annotations

from pathlib import Path

import pytest

from lisguard.domain.alerts import Alert, Recommendation
from lisguard.domain.engine import evaluate, keys_to_follow, patient_keys
from lisguard.domain.knowledge import KnowledgeBase, KnowledgeBaseError, load_knowledge_base
from lisguard.domain.patient import PatientState
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.reader import parse

R = Recommendation
MSH = "MSH|^~\\&|APP|FAC|LISGUARD|FAC|{time}||{type}|{cid}|P|2.5.1"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def hl7(cid: str, time: str, mtype: str, *segments: str) -> str:
    return "\r".join([MSH.format(time=time, type=mtype, cid=cid), *segments])


class Feed:
    """Messages through to_clinical and evaluate, states kept as serve keeps them."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.states: dict[str, PatientState] = {}
        self.alerts: list[Alert] = []

    def send(self, text: str) -> list[Alert]:
        msg = to_clinical(parse(text), self.kb.identity)
        wanted = {k: self.states[k] for k in patient_keys(msg) if k in self.states}
        for _ in range(8):
            lock, read = keys_to_follow(msg, wanted)
            more = [k for k in (*lock, *read) if k in self.states and k not in wanted]
            if not more:
                break
            wanted.update({k: self.states[k] for k in more})
        out = evaluate(msg, wanted, self.kb)
        self.states.update(out.states)
        self.alerts.extend(out.alerts)
        return out.alerts


def dose(cid: str, pid: str, when: str = "20260301090000", route: str = "IV") -> str:
    return hl7(
        cid, when, "RAS^O17", f"PID|1||{pid}", "ORC|RE|RX-" + cid,
        f"RXA|0|1|{when}||J9145^daratumumab^HCPCS|1100|mg", f"RXR|{route}",
    )


def screen(cid: str, pid: str, order: str, when: str = "20260320080000") -> str:
    return hl7(
        cid, when, "ORM^O01", f"PID|1||{pid}", f"ORC|NW|{order}",
        f"OBR|1|{order}||890-4^Antibody screen^LN|||{when}",
    )


def site(tmp_path: Path, text: str) -> KnowledgeBase:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return load_knowledge_base([path])


# ---------------------------------------------------------------------------- identity
IDENTITY = """
identity:
  authorities:
    - [UMC, UMCMRN, "2.16.840.1.113883.3.9999.1"]
  identifier_types: [MR, MRN]
  bare_ids: UMC
  strip_leading_zeros: true
"""


def test_site_identity_joins_bare_aliased_and_oid_identifiers(tmp_path: Path) -> None:
    feed = Feed(site(tmp_path, IDENTITY))
    [baseline] = feed.send(dose("D1", "00123456"))
    assert baseline.patient_key == "123456^UMC"
    [a] = feed.send(screen("S1", "123456^^^UMCMRN^MR", "O1"))
    assert (a.rule.value, a.patient_key) == ("bb-serology", "123456^UMC")
    [b] = feed.send(
        screen("S2", "V77^^^UMC^AN~123456^^^&2.16.840.1.113883.3.9999.1&ISO^MRN", "O2")
    )
    assert b.patient_key == "123456^UMC"


def test_without_identity_settings_a_bare_id_is_another_patient(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "123456"))
    assert feed.send(screen("S1", "123456^^^UMC^MR", "O1")) == []
    assert [a.rule.value for a in feed.send(screen("S2", "123456", "O2"))] == ["bb-serology"]


def test_another_register_is_another_patient(tmp_path: Path) -> None:
    feed = Feed(site(tmp_path, IDENTITY))
    feed.send(dose("D1", "555^^^STMARY^MR"))
    assert feed.send(screen("S1", "555^^^UMC^MR", "O1")) == []


def test_an_account_number_is_not_the_patient(kb: KnowledgeBase) -> None:
    msg = to_clinical(parse(screen("S1", "V1^^^UMC^AN~M9^^^UMC^PI", "O1")), kb.identity)
    assert msg.patient is not None and msg.patient.key == "M9^UMC"


def test_an_authority_in_two_groups_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match=r"identity\.authorities: .*'B' is in group 0"):
        site(tmp_path, "identity:\n  authorities: [[A, B], [B, C]]\n")


# ---------------------------------------------------------------------------- merges, links
def merge(cid: str, survivor: str, prior: str, trigger: str = "A40") -> str:
    return hl7(cid, "20260305100000", f"ADT^{trigger}", f"PID|1||{survivor}", f"MRG|{prior}")


def link(cid: str, a: str, b: str, trigger: str = "A24") -> str:
    return hl7(cid, "20260305100000", f"ADT^{trigger}", f"PID|1||{a}", "PV1|1|O", f"PID|2||{b}")


def test_a_retired_identifier_lands_on_the_survivor(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "OLD^^^H^MR"))
    feed.send(merge("M1", "NEW^^^H^MR", "OLD^^^H^MR"))
    assert feed.states["OLD^H"] == PatientState(key="OLD^H", alias_of="NEW^H")
    [a] = feed.send(screen("S1", "OLD^^^H^MR", "O1"))
    assert (a.patient, a.patient_authority, a.rule.value) == ("NEW", "H", "bb-serology")
    # the same merge again (a resend under another control id) changes nothing
    feed.send(merge("M2", "NEW^^^H^MR", "OLD^^^H^MR"))
    assert feed.states["NEW^H"].merged_from == ["OLD^H"]


def test_a_chain_of_merges_is_followed(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "A^^^H^MR"))
    feed.send(merge("M1", "B^^^H^MR", "A^^^H^MR"))
    feed.send(merge("M2", "C^^^H^MR", "B^^^H^MR"))
    [a] = feed.send(screen("S1", "A^^^H^MR", "O1"))
    assert a.patient == "C"
    assert set(feed.states["C^H"].exposures) == {"daratumumab_iv"}


def test_an_unlink_never_undoes_a_merge(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "OLD^^^H^MR"))
    feed.send(merge("M1", "NEW^^^H^MR", "OLD^^^H^MR"))
    feed.send(link("U1", "NEW^^^H^MR", "OLD^^^H^MR", trigger="A37"))
    [a] = feed.send(screen("S1", "OLD^^^H^MR", "O1"))
    assert a.patient == "NEW"


def test_linked_records_share_exposures_until_unlinked(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(link("L1", "P1^^^H^MR", "P2^^^H^MR"))
    feed.send(dose("D1", "P1^^^H^MR"))
    [a] = feed.send(screen("S1", "P2^^^H^MR", "O1"))
    assert (a.patient, a.drugs) == ("P2", ("daratumumab_iv",))
    assert feed.states["P2^H"].exposures == {}  # shared for the rules, not copied
    feed.send(link("U1", "P1^^^H^MR", "P2^^^H^MR", trigger="A37"))
    assert feed.send(screen("S2", "P2^^^H^MR", "O2")) == []
    assert feed.states["P1^H"].linked == [] and feed.states["P2^H"].linked == []


# ---------------------------------------------------------------------------- products
def product_order(cid: str, pid: str, product: str, mtype: str = "OMB^O27") -> str:
    return hl7(
        cid, "20260320080000", mtype, f"PID|1||{pid}", f"ORC|NW|BP-{cid}",
        f"BPO|1|{product}||2|||20260320120000",
    )


@pytest.mark.parametrize(
    ("product", "alerts"),
    [
        ("RBC^Red Blood Cells^L", ["bb-serology"]),
        ("PC^Red Blood Cells, plasma reduced^L", ["bb-serology"]),
        ("XYZ^Local product 17^L", ["bb-serology"]),  # unknown: taken for red cells
        ("PLT^Platelets^L", []),
        ("FFP^Fresh Frozen Plasma^L", []),
        ("CRYO^Cryoprecipitate^L", []),
    ],
)
def test_omb_products(kb: KnowledgeBase, product: str, alerts: list[str]) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    assert [a.rule.value for a in feed.send(product_order("B1", "P1^^^H^MR", product))] == alerts


def test_a_dispense_of_an_order_already_alerted_raises_nothing_more(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    [a] = feed.send(product_order("B1", "P1^^^H^MR", "RBC^Red Blood Cells^L"))
    assert a.evidence[0].location == "BPO-2"
    bps = hl7(
        "B2", "20260320130000", "BPS^O29", "PID|1||P1^^^H^MR", "ORC|SC|BP-B1",
        "BPO|1|RBC^Red Blood Cells^L||1", "BPX|1|DS^Dispensed|F|20260320130000|W1|"
        "E0336V00^Red Blood Cells, Leukocytes Reduced^ISBT128|||||||||1",
    )
    assert feed.send(bps) == []


@pytest.mark.parametrize(
    ("name", "alerts"),
    [
        ("PRBC^PREPARE RBC^L", ["bb-serology"]),
        ("BBTRANS^TRANSFUSE RBC 1 UNIT^L", ["bb-serology"]),
        ("XM2^CROSSMATCH 2 UNITS^L", ["bb-serology"]),
        ("PLTX^TRANSFUSE PLATELETS^L", []),
        ("RBC^RBC^L", []),  # a count, not a product
        ("UA^RED BLOOD CELLS, URINE^L", []),
    ],
)
def test_product_orders_by_name(kb: KnowledgeBase, name: str, alerts: list[str]) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    order = hl7(
        "O1", "20260320080000", "ORM^O01", "PID|1||P1^^^H^MR", "ORC|NW|X1",
        f"OBR|1|X1||{name}|||20260320080000",
    )
    assert [a.rule.value for a in feed.send(order)] == alerts


# ---------------------------------------------------------------------------- order questions
def asked(cid: str, pid: str, question: str, answer: str, value_type: str = "CWE") -> str:
    return hl7(
        cid, "20260320080000", "ORM^O01", f"PID|1||{pid}", f"ORC|NW|Q{cid}",
        f"OBR|1|Q{cid}||BBTS^TYPE AND SCREEN^L|||20260320080000",
        f"OBX|1|{value_type}|{question}||{answer}",
    )


Q2 = "BBQ1^Has the patient received daratumumab or isatuximab in the last 6 months?^L"


@pytest.mark.parametrize(
    ("question", "answer", "value_type", "drugs"),
    [
        (Q2, "Y^Yes^HL70136", "CWE", ["anti_cd38_unspecified"]),
        (Q2, "Yes", "ST", ["anti_cd38_unspecified"]),
        ("BBQ3^Daratumumab in the last 6 months?^L", "Y", "ID", ["daratumumab_iv"]),
        ("BBQ4^Anti-CD38 therapy?^L", "YES", "ST", ["anti_cd38_unspecified"]),
        (Q2, "N^No^HL70136", "CWE", []),
        (Q2, "UNK^Unknown^L", "CWE", []),
        ("BBQ5^Transfused in the last 3 months?^L", "Y", "ST", []),
    ],
)
def test_order_questions(
    kb: KnowledgeBase, question: str, answer: str, value_type: str, drugs: list[str]
) -> None:
    feed = Feed(kb)
    alerts = feed.send(asked("A1", "P1^^^H^MR", question, answer, value_type))
    state = feed.states.get("P1^H")
    assert sorted(state.exposures if state else []) == drugs
    assert [a.rule.value for a in alerts] == (["bb-serology"] if drugs else [])
    if drugs:
        assert state is not None and state.exposures[drugs[0]].kinds == ["question"]
        assert "stated at order entry" in alerts[0].text


# ---------------------------------------------------------------------------- typing, isotype
@pytest.mark.parametrize(
    ("value", "k"),
    [
        ("KEL*01.01/KEL*02.01", True),
        ("KEL*02/KEL*02", False),
        ("KEL*02.03/KEL*02", False),  # Kp(a) allele: still little k
        ("KEL*02N.01/KEL*02", False),
        ("KEL:1,2", True),
        ("KEL:-1,2", False),
        ("KEL:-1,2,-3,4", False),
        ("K+k+", True),
        ("K-k+", False),
        ("Kpa-Kpb+", None),
        ("see report", None),
    ],
)
def test_kell_notation(kb: KnowledgeBase, value: str, k: bool | None) -> None:
    assert kb.kell_notation(value) is k


@pytest.mark.parametrize(
    ("obx", "k"),
    [
        ("OBX|1|ST|KELGENO^KEL GENOTYPE^L||KEL*01.01/KEL*02.01", True),
        ("OBX|1|ST|KELPP^KEL PREDICTED PHENOTYPE^L||K+k+", True),
        ("OBX|1|ST|KELGENO^KEL GENOTYPE^L||KEL*02/KEL*02", False),
    ],
)
def test_a_k_positive_genotype_gets_no_k_negative_demand(
    kb: KnowledgeBase, obx: str, k: bool
) -> None:
    feed = Feed(kb)
    feed.send(
        hl7(
            "G1", "20260201080000", "ORU^R01", "PID|1||P1^^^H^MR",
            "OBR|1|G1||RBCGENO^RBC ANTIGEN GENOTYPE (PREDICTED PHENOTYPE)^L|||20260201080000",
            obx,
        )
    )
    assert feed.states["P1^H"].k_positive is k
    feed.send(dose("D1", "P1^^^H^MR"))
    [a] = feed.send(screen("S1", "P1^^^H^MR", "O1"))
    assert (R.KELL_NEGATIVE_UNITS in a.recommendations) is (not k)
    assert R.PHENOTYPE_MATCHED_UNITS in a.recommendations


@pytest.mark.parametrize(
    ("text", "isotype"),
    [
        ("Monoclonal IgG protein with kappa light chain specificity detected.", "IgG kappa"),
        ("IFE: IgG/K monoclonal band, gamma region.", "IgG kappa"),
        ("IgG-κ paraprotein identified.", "IgG kappa"),
        ("IgA/L band", "IgA lambda"),
        ("Kappa free light chain 45.1 mg/L, lambda free light chain 10.2 mg/L, ratio 4.42", None),
        ("Free light chains: kappa 45.1, lambda 10.2; kappa/lambda ratio 4.42", None),
        ("Lambda light chain only", "free lambda light chain"),
        ("No monoclonal IgG kappa protein detected.", None),
    ],
)
def test_isotype_wording(kb: KnowledgeBase, text: str, isotype: str | None) -> None:
    assert kb.mprotein_isotype(text) == isotype


# ---------------------------------------------------------------------------- flow MRD
@pytest.mark.parametrize(
    ("name", "recommendations"),
    [
        ("MRDFC^PLASMA CELL MRD, FLOW CYTOMETRY (BONE MARROW)^L", [R.CD38_INDEPENDENT_GATING]),
        ("BALLMRD^B-ALL MRD, FLOW CYTOMETRY^L", [R.CD38_EPITOPE_MASKED]),
        ("TALLMRD^T-ALL MINIMAL RESIDUAL DISEASE BY FLOW^L", [R.CD38_EPITOPE_MASKED]),
        ("CLLMRD^CLL MRD BY FLOW CYTOMETRY^L", None),
        ("AMLMRD^AML MRD FLOW^L", None),
    ],
)
def test_flow_mrd_scope(
    kb: KnowledgeBase, name: str, recommendations: list[Recommendation] | None
) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    order = hl7(
        "F1", "20260320080000", "ORM^O01", "PID|1||P1^^^H^MR", "ORC|NW|F1",
        f"OBR|1|F1||{name}|||20260320080000",
    )
    alerts = feed.send(order)
    if recommendations is None:
        assert alerts == []
    else:
        [a] = alerts
        assert (a.rule.value, list(a.recommendations)) == ("flow-mrd", recommendations)


# ---------------------------------------------------------------------------- order numbers
def test_a_result_with_only_the_filler_number_is_the_same_order(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    order = hl7(
        "O1", "20260320080000", "ORM^O01", "PID|1||P1^^^H^MR", "ORC|NW|PL1^EPIC|FL1^LIS",
        "OBR|1|PL1^EPIC|FL1^LIS|890-4^Antibody screen^LN|||20260320080000",
    )
    [a] = feed.send(order)
    assert a.order == "PL1"
    result = hl7(
        "R1", "20260320100000", "ORU^R01", "PID|1||P1^^^H^MR",
        "OBR|1||FL1^LIS|890-4^Antibody screen^LN|||20260320080000",
        "OBX|1|ST|890-4^Antibody screen^LN||POS",
    )
    assert feed.send(result) == []
    # another order, placer only: its own alert
    [b] = feed.send(screen("S2", "P1^^^H^MR", "PL2"))
    assert b.order == "PL2"


def test_order_numbers_are_remembered_only_for_orders_the_rules_read(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(dose("D1", "P1^^^H^MR"))
    cbc = hl7(
        "C1", "20260320080000", "ORU^R01", "PID|1||P1^^^H^MR",
        "OBR|1|PL9|FL9|CBC^COMPLETE BLOOD COUNT^L|||20260320080000", "OBX|1|NM|HGB^HGB^L||9.8",
    )
    feed.send(cbc)
    assert feed.states["P1^H"].order_numbers == {}


# ---------------------------------------------------------------------------- drugs
@pytest.mark.parametrize(("route", "drug"), [("SC^Subcutaneous^HL70162", "isatuximab_sc"),
                                             ("SUBQ", "isatuximab_sc"), ("IV", "isatuximab_iv")])
def test_isatuximab_route(kb: KnowledgeBase, route: str, drug: str) -> None:
    feed = Feed(kb)
    rde = hl7(
        "X1", "20260301090000", "RDE^O11", "PID|1||P1^^^H^MR", "ORC|NW|RX1",
        "RXE|^^^20260302|2282023^Sarclisa^RXNORM|10||mg/kg", f"RXR|{route}",
    )
    [a] = feed.send(rde)
    assert a.drugs == (drug,)


def test_elotuzumab_by_hcpcs_is_named_right_on_its_spep_alert(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(
        hl7("E1", "20260301090000", "RAS^O17", "PID|1||P1^^^H^MR", "ORC|RE|RX1",
            "RXA|0|1|20260301090000||J9176^elotuzumab^HCPCS|700|mg")
    )
    spep = hl7(
        "S1", "20260320080000", "ORM^O01", "PID|1||P1^^^H^MR", "ORC|NW|SP1",
        "OBR|1|SP1||24351-9^SPEP^LN|||20260320080000",
    )
    [a] = feed.send(spep)
    assert (a.rule.value, a.drugs) == ("spep-ife", ("elotuzumab",))
    assert "anti-CD38" not in a.text and "last dose 2026-03-01" in a.text


def test_anti_cd47_gets_its_own_advice_not_dtt(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(
        hl7("M1", "20260301090000", "RAS^O17", "PID|1||P1^^^H^MR", "ORC|RE|RX1",
            "RXA|0|1|20260301090000||MAGRO^magrolimab 1 mg/kg^L|70|mg")
    )
    [a] = feed.send(screen("S1", "P1^^^H^MR", "O1"))
    assert a.recommendations == (R.ANTI_CD47_WORKUP,)
    assert "VELLIQUETTE 2019" in a.sources


def test_a_mention_is_not_shown_as_a_dose(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    order = hl7(
        "N1", "20260320080000", "ORM^O01", "PID|1||P1^^^H^MR", "ORC|NW|N1",
        "OBR|1|N1||890-4^Antibody screen^LN|||20260320080000||||||Pt on Darzalex Faspro q4wk",
    )
    [a] = feed.send(order)
    assert "mentioned in free text 2026-03-20" in a.text and "last dose" not in a.text
