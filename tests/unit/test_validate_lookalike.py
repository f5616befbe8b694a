"""Which local test and drug names `lisguard validate` calls unmapped candidates, and which it
leaves alone (lisguard.validation.lookalike), against the real knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

from lisguard.domain.facts import Coded
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.validation.lookalike import Lookalike

KB = load_knowledge_base()
LOOK = Lookalike(KB)


def hint(text: str, code: str = "LOCAL1", system: str = "L") -> str | None:
    found = LOOK.test(Coded(code, text, system), Coded())
    return found.test_id if found else None


@pytest.mark.parametrize(
    ("text", "test_id"),
    [
        ("BB PREOP PANEL", "type_and_screen"),
        ("BLOOD BANK SPECIMEN HOLD", "type_and_screen"),
        ("TYPE AND HOLD", "type_and_screen"),
        ("T&H", "type_and_screen"),
        ("XMAHG 2U", "crossmatch"),
        ("CRSMTCH", "crossmatch"),
        ("ANTIBDY SCRN W/REFLEX", "antibody_screen"),
        ("COOMBS", "direct_antiglobulin_test"),
        ("LEWIS PHENOTYPE", "rbc_phenotype"),
        ("BLD GRP", "abo_rh"),
        ("RBC LR IRR", "red_cell_product_order"),
        ("IMFIX SERUM", "ife_serum"),
        ("IFX", "ife"),
        ("SPE", "protein_electrophoresis"),
        ("SERUM ELP", "spep"),
        ("FCM BONE MARROW", "flow_mrd"),
        ("PLASMA CELL ENUMERATION", "flow_mrd"),
        ("B-ALL FCM MARROW", "all_flow_mrd"),
        ("IG G", "immunoglobulin_g"),
        ("IMMUNOGLOB A", "immunoglobulin_a"),
        ("IMM GLOB M", "immunoglobulin_m"),
    ],
)
def test_local_names_that_look_like_tests_lisguard_reads(text: str, test_id: str) -> None:
    assert KB.categorize(Coded("LOCAL1", text, "L")) == frozenset(), "already maps"
    assert hint(text) == test_id


@pytest.mark.parametrize(
    "text",
    [
        # share letters only
        "DATE OF SERVICE", "DATA ENTRY", "FLOWSHEET NOTE", "PEAK FLOW", "FLOW RATE",
        "ABS NEUTROPHILS", "XMR", "SPECIMEN",
        # the knowledge base turns them away on purpose (its exclusion patterns)
        "IGG SUBCLASS 4", "IGG INDEX CSF", "HLA ANTIBODY SCREEN", "URINE PEP",
        "24 HR URINE PROTEIN ELECTROPHORESIS", "ELECTRONIC XM", "HLA CROSSMATCH",
        "CLL FLOW PANEL BONE MARROW", "PLATELET ANTIBODY SCREEN", "IG G CSF",
        # something else that happens to use the words
        "HEMOGLOBIN ELECTROPHORESIS", "HGB ELECTROPHORESIS", "LIPOPROTEIN ELECTROPHORESIS",
        "ALK PHOS ISOENZYME ELECTROPHORESIS", "BB COMMENT", "BB ARMBAND NUMBER",
        "BLOOD BANK SPECIMEN EXPIRATION DATE", "CD4 COUNT FLOW", "PNH FLOW FLAER",
        "FETAL CELL FLOW", "IGE TOTAL", "BB PLATELET ORDER",
        # order questions are read as such
        "Anti-CD38 therapy (daratumumab, isatuximab)?",
        "Has the patient received daratumumab in the last 6 months",
    ],
)
def test_names_that_only_look_alike_are_not_candidates(text: str) -> None:
    assert hint(text) is None


def test_what_already_maps_is_never_a_candidate() -> None:
    for text in ("TYPE AND SCREEN", "ANTIBODY SCREEN", "IMMUNOFIXATION LOCAL", "IGG", "MRD"):
        assert KB.categorize(Coded("X", text, "L"))
        assert hint(text) is None


def test_a_bare_code_is_read_as_a_mnemonic_only_without_a_name() -> None:
    assert hint("", code="IFE") == "ife"
    assert hint("", code="BBXYZ") == "type_and_screen"
    assert hint("", code="IGG") == "immunoglobulin_g"
    assert hint("POTASSIUM", code="IFE") is None  # the name says what the code is
    assert hint("", code="DOS") is None


def test_a_result_naming_cd38_marks_its_order_unless_the_order_is_turned_away() -> None:
    assert LOOK.is_marker(Coded("C38", "CD38 POSITIVE EVENTS", "L"), Coded())
    assert LOOK.is_marker(Coded("C138", "CD 138", "L"), Coded())
    assert not LOOK.is_marker(Coded("C3", "CD3 ABS", "L"), Coded())
    found = LOOK.order_by_markers(Coded("FCX", "FLOW PANEL X", "L"), Coded())
    assert found is not None and found.test_id == "flow_mrd"
    assert LOOK.order_by_markers(Coded("FCX", "CLL PANEL", "L"), Coded()) is None


def test_a_test_the_site_switched_off_is_not_suggested(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("tests:\n  - id: type_and_screen\n    enabled: false\n")
    look = Lookalike(load_knowledge_base([site]))
    assert look.test(Coded("TH", "TYPE AND HOLD", "L"), Coded()) is None
    assert look.test(Coded("XM1", "XMAHG", "L"), Coded()) is not None


def drug(text: str, kb: KnowledgeBase = KB) -> str | None:
    coded = Coded("RX1", text, "99RX")
    assert kb.drug_for_code(coded) is None, f"{text!r} already names a drug"
    found = Lookalike(kb).drug(coded)
    return found.drug_id if found else None


@pytest.mark.parametrize(
    ("text", "drug_id"),
    [
        ("DARATUMU 16MG/KG IVPB", "daratumumab_iv"),  # truncated
        ("DARATUMUMAB1800MG", "daratumumab_iv"),  # glued to the dose
        ("DARATUMAB 1800 MG", "daratumumab_iv"),  # misspelt
        ("DARZALEXFASPRO1800MG", "daratumumab_sc"),  # both words of the SC brand
        ("FASPRO 1800 MG", "daratumumab_sc"),
        ("DARA1800MG SC", "daratumumab_iv"),
        ("SARCLSA 100MG", "isatuximab_iv"),
        ("ISATUX 500MG", "isatuximab_iv"),
        ("TECLISTAM 153MG", "teclistamab"),
        ("TALQUETAMB 40MG", "talquetamab"),
        ("ELRANATAMB 76MG", "elranatamab"),
        ("LINVOSELT 200MG", "linvoseltamab"),
        ("IVIG10PCT 40G", "ivig_unspecified"),
        ("PRIVIGN 40 G", "privigen"),
        ("GAMUNEXC 10%", "gamunex_c"),
        ("HIZENTRA20% 4G", "hizentra"),
    ],
)
def test_drug_names_that_look_like_ours(text: str, drug_id: str) -> None:
    assert drug(text) == drug_id


@pytest.mark.parametrize(
    "text",
    [
        "DARAPRIM 25 MG TAB",  # pyrimethamine
        "DARUNAVIR 800 MG TAB",
        "DARBEPOETIN ALFA 100 MCG",
        "INFLIXIMAB 100 MG",
        "RITUXIMAB 500 MG",
        "TALC POWDER",
        "HEPATITIS B IMMUNE GLOBULIN 5 ML",  # a hyperimmune globulin, not IVIG
        "TETANUS IMMUNE GLOBULIN",
        "OCTREOTIDE 100 MCG",
        "DEXAMETHASONE 40 MG",
        "ISAVUCONAZONIUM 372 MG",
    ],
)
def test_other_drugs_are_not_candidates(text: str) -> None:
    assert drug(text) is None
