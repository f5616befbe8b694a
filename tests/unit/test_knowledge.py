"""The knowledge base: codes and names of drugs and tests, result wording, site files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lisguard.domain.facts import Coded
from lisguard.domain.kb_models import loinc_check_digit
from lisguard.domain.knowledge import (
    DEFAULT_KNOWLEDGE_DIR,
    Effect,
    KnowledgeBase,
    KnowledgeBaseError,
    TestCategory,
    load_knowledge_base,
)

IAT = TestCategory.IAT_SEROLOGY
ABO = TestCategory.ABO_RH
DAT = TestCategory.DAT
SPEP = TestCategory.SPEP
IFE = TestCategory.IFE
MRD = TestCategory.FLOW_MRD
PHENO = TestCategory.RBC_PHENOTYPE
GENO = TestCategory.RBC_GENOTYPE


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def drug_id(kb: KnowledgeBase, coded: Coded) -> str | None:
    drug = kb.drug_for_code(coded)
    return drug.id if drug else None


# ---------------------------------------------------------------------------- drug content


def test_default_directory_loads(kb: KnowledgeBase) -> None:
    assert DEFAULT_KNOWLEDGE_DIR.is_dir()
    assert kb.default_window_months == 6
    assert set(kb.drugs) == {
        "anti_cd38_unspecified",
        "linvoseltamab",
        "magrolimab",
        "daratumumab_iv",
        "daratumumab_sc",
        "isatuximab_iv",
        "isatuximab_sc",
        "elotuzumab",
        "teclistamab",
        "elranatamab",
        "talquetamab",
        # immunoglobulin products (IVIG, SCIG, RhIG)
        *("ivig_unspecified", "immune_globulin_im", "privigen", "gammagard_liquid"),
        *("gammagard_sd", "gamunex_c", "octagam", "flebogamma", "gammaplex", "bivigam"),
        *("panzyga", "asceniv", "alyglo", "yimmugo", "scig_unspecified", "hizentra"),
        *("cuvitru", "xembify", "cutaquig", "hyqvia", "rho_d_immune_globulin"),
    }


def test_drug_effects_follow_the_alert_contract(kb: KnowledgeBase) -> None:
    all_three = {Effect.RBC_SEROLOGY, Effect.SPEP_IFE, Effect.CD38_FLOW}
    for ident in ("daratumumab_iv", "daratumumab_sc", "isatuximab_iv", "isatuximab_sc"):
        drug = kb.drugs[ident]
        assert drug.effects == all_three
        assert drug.drug_class == "anti_cd38"
        assert drug.drug_specific_ife
    assert kb.drugs["elotuzumab"].effects == {Effect.SPEP_IFE}
    assert not kb.drugs["elotuzumab"].drug_specific_ife
    for ident in ("teclistamab", "elranatamab", "talquetamab"):
        assert kb.drugs[ident].effects == frozenset()
    assert all(d.enabled for d in kb.drugs.values())


def test_window_months(kb: KnowledgeBase) -> None:
    drug = kb.drugs["daratumumab_iv"]
    assert kb.window_months(drug) == 6
    assert kb.window_months(drug.model_copy(update={"window_months": 9})) == 9


# ---------------------------------------------------------------------------- drugs by code

DOMAIN_CODES = [
    # HCPCS
    ("J9145", "HCPCS", "daratumumab_iv"),
    ("J9144", "HCPCS", "daratumumab_sc"),
    ("J9227", "HCPCS", "isatuximab_iv"),
    ("J9380", "HCPCS", "teclistamab"),
    ("J9144", "CPT", "daratumumab_sc"),
    ("j9145", "", "daratumumab_iv"),
    # NDC labeler-product
    ("57894-502", "NDC", "daratumumab_iv"),
    ("57894-503", "NDC", "daratumumab_sc"),
    ("0024-0654", "NDC", "isatuximab_iv"),
    ("0024-0656", "NDC", "isatuximab_iv"),
    ("0003-4522", "NDC", "elotuzumab"),
    ("57894-449", "NDC", "teclistamab"),
    ("0069-4494", "NDC", "elranatamab"),
    # RxNorm
    *[(c, "RXNORM", "daratumumab_sc") for c in ("2375136", "2375141")],
    *[(c, "RxNorm", "isatuximab_iv") for c in ("2282023", "2282028", "2282031", "2282032")],
    *[(c, "RXN", "elotuzumab") for c in ("1726110", "1726115", "1726117", "1726119")],
    *[(c, "RX", "teclistamab") for c in ("2619432", "2619438", "2619441", "2619444")],
    ("2375136", "http://www.nlm.nih.gov/research/umls/rxnorm", "daratumumab_sc"),
]


@pytest.mark.parametrize(("code", "system", "expected"), DOMAIN_CODES)
def test_drug_by_code(kb: KnowledgeBase, code: str, system: str, expected: str) -> None:
    assert drug_id(kb, Coded(code, "", system)) == expected


@pytest.mark.parametrize(
    ("code", "system", "expected"),
    [
        ("57894-0502-01", "NDC", "daratumumab_iv"),  # 11-digit hyphenated 5-4-2
        ("57894-502-05", "", "daratumumab_iv"),  # 10-digit 5-3-2, no system
        ("57894050201", "", "daratumumab_iv"),  # 11 digits
        ("5789450201", "N4", "daratumumab_iv"),  # 10 digits, read as 5-3-2
        ("57894-503-01", "NDC", "daratumumab_sc"),
        ("57894050301", "NDC", "daratumumab_sc"),
        ("0024-0654-01", "", "isatuximab_iv"),  # 4-4-2
        ("00024065401", "NDC", "isatuximab_iv"),
        ("0024065601", "", "isatuximab_iv"),  # 10 digits, read as 4-4-2
        ("0003-4522-11", "NDC", "elotuzumab"),
        ("00003452211", "", "elotuzumab"),
        ("57894-449-01", "NDC", "teclistamab"),
        ("0069-4494-01", "NDC", "elranatamab"),
        ("578940502", "NDC", "daratumumab_iv"),  # labeler+product only, system says NDC
    ],
)
def test_ndc_formats(kb: KnowledgeBase, code: str, system: str, expected: str) -> None:
    assert drug_id(kb, Coded(code, "", system)) == expected


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("12345-678-90", "NDC"),  # unknown product
        ("1234567890", ""),  # unknown 10-digit
        ("2375136", ""),  # an RxCUI is only read as one when the system says RxNorm
        ("57894050201", "RXNORM"),  # an NDC labelled RxNorm is not an RxCUI we know
        ("57894-502", "LN"),  # a LOINC-labelled code is never an NDC
        ("578940502", ""),  # 9 digits: NDC only when the system says so
        ("J9999", "HCPCS"),
    ],
)
def test_unknown_codes(kb: KnowledgeBase, code: str, system: str) -> None:
    assert kb.drug_for_code(Coded(code, "", system)) is None


def test_code_answers_are_stable_when_cached(kb: KnowledgeBase) -> None:
    coded = Coded("57894-503-01", "", "NDC")
    assert drug_id(kb, coded) == drug_id(kb, coded) == "daratumumab_sc"


def test_code_falls_back_to_text(kb: KnowledgeBase) -> None:
    assert drug_id(kb, Coded("LOC123", "Darzalex Faspro 1800 mg", "L")) == "daratumumab_sc"
    assert drug_id(kb, Coded("999999", "SARCLISA 500MG/25ML", "RXNORM")) == "isatuximab_iv"
    assert drug_id(kb, Coded("", "ELOTUZUMAB 400 MG", "")) == "elotuzumab"
    assert kb.drug_for_code(Coded("LOC1", "SODIUM CHLORIDE 0.9%", "L")) is None
    assert kb.drug_for_code(Coded()) is None


# ---------------------------------------------------------------------------- drugs by name


def test_every_name_and_alias_finds_its_drug(kb: KnowledgeBase) -> None:
    for drug in kb.drugs.values():
        for name in [*drug.generic_names, *drug.brand_names, *drug.text_aliases]:
            for variant in (name, name.upper(), name.lower()):
                found = kb.drug_for_text(variant)
                assert found is not None and found.id == drug.id, (variant, found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DARATUMUMAB-HYALURONIDASE-FIHJ 1800MG/30000U SC", "daratumumab_sc"),
        ("daratumumab and hyaluronidase-fihj injection", "daratumumab_sc"),
        ("Daratumumab/Hyaluronidase 1,800 mg", "daratumumab_sc"),
        ("Darzalex Faspro", "daratumumab_sc"),
        ("DARZALEX-FASPRO 1800 MG", "daratumumab_sc"),
        ("daratumumab (Darzalex Faspro)", "daratumumab_sc"),  # most specific wins anywhere
        ("Darzalex (daratumumab and hyaluronidase-fihj)", "daratumumab_sc"),
        ("DARZALEX 400 MG/20 ML IV", "daratumumab_iv"),
        ("daratumumab 16 mg/kg IV", "daratumumab_iv"),
        ("ISATUXIMAB-IRFC 500 MG/25 ML", "isatuximab_iv"),
        ("Sarclisa", "isatuximab_iv"),
        ("isatuximab SC", "isatuximab_sc"),
        ("Empliciti 400 mg", "elotuzumab"),
        ("TECLISTAMAB-CQYV 153 MG/1.7 ML", "teclistamab"),
        ("Tecvayli step-up", "teclistamab"),
        ("ELRANATAMAB-BCMM", "elranatamab"),
        ("Elrexfio", "elranatamab"),
        ("TALQUETAMAB-TGVS", "talquetamab"),
        ("Talvey", "talquetamab"),
    ],
)
def test_drug_for_text(kb: KnowledgeBase, text: str, expected: str) -> None:
    drug = kb.drug_for_text(text)
    assert drug is not None and drug.id == expected


@pytest.mark.parametrize(
    "text",
    [
        "radar",
        "Daramide 50 mg",
        "Isabel",
        "isa",
        "VISA",
        "isavuconazonium",
        "Elocon cream",
        "telomerase",
        "dara123",
        "",
    ],
)
def test_names_are_whole_words(kb: KnowledgeBase, text: str) -> None:
    assert kb.drug_for_text(text) is None
    assert kb.mentions(text) == []


# ---------------------------------------------------------------------------- mentions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pt on Darzalex Faspro q4wk", ["daratumumab_sc"]),
        ("discontinued daratumumab 3/2026", ["daratumumab_iv"]),
        ("Daratumumab discontinued 3/2026 for progression", ["daratumumab_iv"]),
        ("no longer on dara since January", ["daratumumab_iv"]),
        ("dara held this cycle", ["daratumumab_iv"]),
        ("Dara-VRd C3D1", ["daratumumab_iv"]),
        ("s/p Isa-Pd x4", ["isatuximab_iv"]),
        ("started IsaKd", ["isatuximab_iv"]),
        ("Elo-Rd", ["elotuzumab"]),
        ("Prior Darzalex, now Sarclisa", ["daratumumab_iv", "isatuximab_iv"]),
        ("daratumumab daratumumab Darzalex", ["daratumumab_iv"]),  # one per drug
        ("No daratumumab or isatuximab; on elotuzumab", ["elotuzumab"]),
        ("No dara. Started on teclistamab", ["teclistamab"]),
        ("no", []),
        ("no daratumumab", []),
        ("not on dara", []),
        ("Not currently receiving daratumumab", []),
        ("denies isatuximab", []),
        ("Denied any Darzalex Faspro", []),
        ("never received daratumumab", []),
        ("without daratumumab", []),
        ("has not received isatuximab", []),
        ("Negative for daratumumab exposure", []),
        ("refused Darzalex", []),
        ("No history of daratumumab", []),
    ],
)
def test_mentions(kb: KnowledgeBase, text: str, expected: list[str]) -> None:
    assert [m.drug.id for m in kb.mentions(text)] == expected


def test_mention_keeps_the_words_that_matched(kb: KnowledgeBase) -> None:
    [mention] = kb.mentions("Pt on DARZALEX FASPRO q4wk")
    assert mention.matched == "DARZALEX FASPRO"
    assert mention.drug.id == "daratumumab_sc"


# ---------------------------------------------------------------------------- test categories

DOMAIN_LOINC = [
    ("890-4", IAT),
    ("888-8", IAT),
    ("1250-0", IAT),
    ("1005-8", IAT),
    ("1003-3", IAT),
    ("1007-4", DAT),
    ("1006-6", DAT),
    ("1004-1", DAT),
    ("883-9", ABO),
    ("10331-7", ABO),
    ("882-1", ABO),
    ("1305-2", ABO),
    ("948-0", PHENO),
    ("1159-3", PHENO),
    ("1021-5", PHENO),
    ("1027-2", PHENO),
    ("1033-0", PHENO),
    ("24351-9", SPEP),
    ("33358-3", SPEP),
    ("25700-6", IFE),
    # found stated by a public source (see tests.yaml)
    ("34532-2", IAT),
    ("34531-4", IAT),
    ("75264-2", IAT),
    ("14575-5", IAT),
    ("34530-6", ABO),
    ("12851-2", SPEP),
    ("74641-2", IFE),
    ("93021-4", MRD),
]


@pytest.mark.parametrize(("code", "category"), DOMAIN_LOINC)
@pytest.mark.parametrize("system", ["LN", "LOINC", "http://loinc.org", ""])
def test_categorize_by_loinc(
    kb: KnowledgeBase, code: str, category: TestCategory, system: str
) -> None:
    assert kb.categorize(Coded(code, "", system)) == {category}


def test_loinc_needs_a_loinc_system(kb: KnowledgeBase) -> None:
    assert kb.categorize(Coded("890-4", "", "L")) == frozenset()
    assert kb.categorize(Coded("890-4", "", "99LAB")) == frozenset()


def test_unverified_urine_ife_code_was_dropped(kb: KnowledgeBase) -> None:
    assert kb.categorize(Coded("13440-3", "", "LN")) == frozenset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ABO/RhD alone never says IAT
        ("ABO/RH", {ABO}),
        ("ABO RH", {ABO}),
        ("ABORH", {ABO}),
        ("ABO GROUP", {ABO}),
        ("RH TYPE", {ABO}),
        ("RHD TYPE", {ABO}),
        ("Rh(D) typing", {ABO}),
        ("BLOOD GROUP", {ABO}),
        ("ABO and Rh group [Type] in Blood", {ABO}),
        # anything with a screen is IAT
        ("TYPE AND SCREEN", {IAT}),
        ("TYPE & SCREEN", {IAT}),
        ("TYPE+SCREEN", {IAT}),
        ("T&S", {IAT}),
        ("T & S", {IAT}),
        ("GROUP AND SCREEN", {IAT}),
        ("GROUP & SAVE", {IAT}),
        ("ABO RH ANTIBODY SCREEN", {ABO, IAT}),
        ("ABO/Rh + Ab screen", {ABO, IAT}),
        ("BLOOD TYPE AND SCREEN", {ABO, IAT}),
        ("ANTIBODY SCREEN", {IAT}),
        ("ABSC", {IAT}),
        ("AB SCRN", {IAT}),
        ("RBC ANTIBODY SCREEN", {IAT}),
        ("Blood group antibody screen [Presence] in Serum or Plasma", {IAT}),
        ("ANTIBODY IDENTIFICATION", {IAT}),
        ("ANTIBODY ID", {IAT}),
        ("ABID", {IAT}),
        ("ANTIBODY PANEL", {IAT}),
        ("IAT", {IAT}),
        ("INDIRECT ANTIGLOBULIN TEST", {IAT}),
        ("INDIRECT COOMBS", {IAT}),
        ("Coombs, indirect", {IAT}),
        ("ELUATE", {IAT}),
        # crossmatch: AHG yes, immediate spin and electronic no
        ("CROSSMATCH", {IAT}),
        ("AHG CROSSMATCH", {IAT}),
        ("CROSS MATCH RBC", {IAT}),
        ("XM", {IAT}),
        ("TYPE AND CROSSMATCH", {IAT}),
        ("CROSSMATCH IMMEDIATE SPIN", set()),
        ("IS CROSSMATCH", set()),
        ("IMMEDIATE-SPIN XM", set()),
        ("ELECTRONIC CROSSMATCH", set()),
        ("HLA CROSSMATCH", set()),
        ("FLOW CYTOMETRY CROSSMATCH", set()),
        # DAT
        ("DAT", {DAT}),
        ("DIRECT ANTIGLOBULIN TEST", {DAT}),
        ("DIRECT COOMBS", {DAT}),
        ("COOMBS DIRECT", {DAT}),
        # SPEP / IFE, serum only
        ("SPEP", {SPEP}),
        ("PROTEIN ELECTROPHORESIS", {SPEP}),
        ("SERUM PROTEIN ELECTROPHORESIS", {SPEP}),
        ("PROTEIN ELECTROPHORESIS, SERUM", {SPEP}),
        ("M-SPIKE", {SPEP}),
        ("MONOCLONAL PROTEIN", {SPEP}),
        ("IMMUNOFIXATION", {IFE}),
        ("IFE", {IFE}),
        ("SERUM IMMUNOFIXATION", {IFE}),
        ("IMMUNOFIXATION, SERUM", {IFE}),
        ("HYDRASHIFT DARATUMUMAB", {IFE}),
        ("SPEP WITH IFE", {SPEP, IFE}),
        ("SERUM AND URINE IFE", {IFE}),
        ("URINE IMMUNOFIXATION", set()),
        ("IMMUNOFIXATION, 24 HR URINE", set()),
        ("UPEP", set()),
        ("URINE PROTEIN ELECTROPHORESIS", set()),
        ("CSF IFE", set()),
        # flow MRD
        ("MRD", {MRD}),
        ("MRD FLOW", {MRD}),
        ("MYELOMA MRD BY FLOW CYTOMETRY", {MRD}),
        ("MINIMAL RESIDUAL DISEASE, PLASMA CELL", {MRD}),
        ("PLASMA CELL NEOPLASM FLOW PANEL", {MRD}),
        ("FLOW CYTOMETRY, PLASMA CELL MYELOMA", {MRD}),
        ("MRD BY NGS", set()),
        ("CLONOSEQ MRD", set()),
        ("PLASMA CELL FISH PANEL", set()),
        # phenotype / genotype
        ("K ANTIGEN", {PHENO}),
        ("KELL ANTIGEN", {PHENO}),
        ("Kell (K) typing", {PHENO}),
        ("K Ag [Presence] on Red Blood Cells", {PHENO}),
        ("k antigen", {PHENO}),
        ("CELLANO", {PHENO}),
        ("EXTENDED RBC PHENOTYPE", {PHENO}),
        ("RBC ANTIGEN TYPING", {PHENO}),
        ("RH PHENOTYPE", {PHENO}),
        ("JKA", {PHENO}),
        ("Fy(a)", {PHENO}),
        ("little c Ag [Presence] on Red Blood Cells", {PHENO}),
        ("RBC GENOTYPE", {GENO}),
        ("RED CELL ANTIGEN GENOTYPING", {GENO}),
        ("HEA BEADCHIP", {GENO}),
        ("KEL GENOTYPE", {GENO}),
        # look-alikes that are not blood bank
        ("K", set()),  # potassium
        ("POTASSIUM", set()),
        ("HIV ANTIBODY SCREEN", set()),
        # not an antibody screen (IAT), but a test passive IgG from IVIG can make positive
        ("HEPATITIS C ANTIBODY SCREEN", {TestCategory.ID_SEROLOGY}),
        ("HLA ANTIBODY SCREEN", set()),
        ("PLATELET ANTIBODY IDENTIFICATION", set()),
        ("HEPATITIS B E ANTIGEN", set()),
        ("PROTEIN C ANTIGEN", set()),
        ("PROTEIN S ANTIGEN, FREE", set()),
        ("ALPHA-1 ANTITRYPSIN PHENOTYPE", set()),
        ("C TYPE NATRIURETIC PEPTIDE", set()),
        ("HCV GENOTYPE", set()),
        ("CYP2C19 GENOTYPE", set()),
        ("LEUKEMIA/LYMPHOMA IMMUNOPHENOTYPING", set()),
        ("ANTI-K TITER", set()),
        ("COMPLETE BLOOD COUNT", set()),
        ("HEMOGLOBIN", set()),
        ("", set()),
    ],
)
def test_categorize_by_name(kb: KnowledgeBase, text: str, expected: set[TestCategory]) -> None:
    assert kb.categorize(Coded("", text, "")) == expected
    assert kb.categorize(Coded("LOCAL1", text, "L")) == expected  # unknown local code


def test_categorize_takes_the_union_of_code_and_name(kb: KnowledgeBase) -> None:
    assert kb.categorize(Coded("883-9", "TYPE AND SCREEN", "LN")) == {ABO, IAT}


def test_categorize_is_stable_when_cached(kb: KnowledgeBase) -> None:
    coded = Coded("", "ABO RH ANTIBODY SCREEN", "")
    assert kb.categorize(coded) == kb.categorize(coded) == {ABO, IAT}


@pytest.mark.parametrize(
    ("coded", "antigen"),
    [
        (Coded("", "K ANTIGEN", ""), "K"),
        (Coded("", "KELL", ""), "K"),
        (Coded("", "Kell (K) antigen typing", ""), "K"),
        (Coded("", "KEL1", ""), "K"),
        (Coded("", "k antigen", ""), "k"),
        (Coded("", "LITTLE K ANTIGEN", ""), "k"),
        (Coded("", "KELL (CELLANO) TYPING", ""), "k"),
        (Coded("", "E ANTIGEN", ""), "E"),
        (Coded("", "e antigen", ""), "e"),
        (Coded("", "LITTLE E", ""), "e"),
        (Coded("", "JKB ANTIGEN", ""), "Jkb"),
        (Coded("", "S ANTIGEN", ""), "S"),
        (Coded("", "LITTLE S ANTIGEN", ""), "s"),
        (Coded("948-0", "", "LN"), "C"),
        (Coded("1159-3", "K ANTIGEN", "LN"), "c"),  # a code match wins over a name match
        (Coded("", "EXTENDED RBC PHENOTYPE", ""), None),
    ],
)
def test_test_for_reads_the_antigen(kb: KnowledgeBase, coded: Coded, antigen: str | None) -> None:
    definition = kb.test_for(coded)
    assert definition is not None
    assert definition.antigen == antigen


def test_test_for_unknown(kb: KnowledgeBase) -> None:
    assert kb.test_for(Coded("2345-7", "GLUCOSE", "LN")) is None
    assert kb.test_for(Coded("", "K", "")) is None


# ---------------------------------------------------------------------------- result wording


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("POS", True),
        ("Positive", True),
        ("REACTIVE", True),
        ("DETECTED", True),
        ("W+", True),
        ("+W", True),
        ("1+", True),
        ("2+", True),
        ("3+", True),
        ("4+", True),
        ("2+W", True),
        ("+", True),
        ("++", True),
        ("MF", True),
        ("POSITIVE - SEE ANTIBODY ID", True),
        ("NEG", False),
        ("negative", False),
        ("NONREACTIVE", False),
        ("NON-REACTIVE", False),
        ("Non reactive", False),
        ("NOT DETECTED", False),
        ("0", False),
        ("-", False),
        ("\u2212", False),  # Unicode minus
        ("NEG, NO ANTIBODY DETECTED", False),
        ("", None),
        ("ND", None),
        ("0.5", None),
        ("SEE NOTE", None),
        ("INCONCLUSIVE", None),
    ],
)
def test_is_reactive(kb: KnowledgeBase, value: str, expected: bool | None) -> None:
    assert kb.is_reactive(value) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SCREEN CELL I", True),
        ("Screening cell 2", True),
        ("SC I", True),
        ("SC II", True),
        ("SC III", True),
        ("SC1", True),
        ("SCR 3", True),
        ("CELL I", True),
        ("Cell 3", True),
        ("ANTIBODY SCREEN CELL 2", True),
        ("PANEL CELL 1", False),
        ("CELL 10", False),
        ("AUTOCONTROL", False),
        ("ANTIBODY SCREEN", False),
        ("DAT IGG", False),
        ("", False),
    ],
)
def test_is_screening_cell(kb: KnowledgeBase, text: str, expected: bool) -> None:
    assert kb.is_screening_cell(Coded("", text, "")) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Panreactive antibody screen", True),
        ("PAN-REACTIVE", True),
        ("Panagglutinin present", True),
        ("Panagglutination in all phases", True),
        ("Reactive with all cells tested", True),
        ("Positive with all panel cells", True),
        ("All screening cells reactive", True),
        ("All 3 screen cells positive", True),
        ("ALL CELLS REACTIVE AT AHG", True),
        ("Antibody screen: panreactive; anti-CD38 suspected", True),
        ("Not panreactive", False),
        ("No panagglutinin detected", False),
        ("Reactive with cell 2 only", False),
        ("Anti-E identified", False),
        ("", False),
    ],
)
def test_says_panreactive(kb: KnowledgeBase, text: str, expected: bool) -> None:
    assert kb.says_panreactive(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IgG kappa monoclonal protein detected", "IgG kappa"),
        ("IMMUNOFIXATION: IGG KAPPA", "IgG kappa"),
        ("IgG-kappa", "IgG kappa"),
        ("IgGk band in the gamma region", "IgG kappa"),
        ("IgG \u03ba", "IgG kappa"),
        ("IgA lambda", "IgA lambda"),
        ("IgA-L", "IgA lambda"),
        ("IgM kappa paraprotein", "IgM kappa"),
        ("IgD lambda", "IgD lambda"),
        ("Immunoglobulin G kappa", "IgG kappa"),
        ("Free kappa light chain", "free kappa light chain"),
        ("Lambda light chain only", "free lambda light chain"),
        ("Small IgG kappa band, likely daratumumab", "IgG kappa"),
        ("IgG lambda and IgA kappa (biclonal)", "IgG lambda"),
        ("No IgA detected. IgG kappa present", "IgG kappa"),
        ("No monoclonal protein detected", None),
        ("Negative for M-protein", None),
        ("No IgG kappa monoclonal protein detected", None),
        ("IgG kappa not detected", None),
        ("Previously identified IgG kappa, no longer detected", None),
        ("Negative for monoclonal IgG kappa", None),
        ("IgG 1200 mg/dL", None),
        ("IgG level normal", None),
        ("", None),
    ],
)
def test_mprotein_isotype(kb: KnowledgeBase, text: str, expected: str | None) -> None:
    assert kb.mprotein_isotype(text) == expected


@pytest.mark.parametrize(
    ("antigen", "value", "expected"),
    [
        ("K", "POS", True),
        ("K", "Positive", True),
        ("K", "+", True),
        ("K", "K+", True),
        ("K", "K POS", True),
        ("K", "KELL POSITIVE", True),
        ("K", "K+k+", True),
        ("K", "K1 POS", True),
        ("K", "NEG", False),
        ("K", "negative", False),
        ("K", "0", False),
        ("K", "K-", False),
        ("K", "K\u2013", False),  # en dash
        ("K", "K NEG", False),
        ("K", "Kell negative", False),
        ("K", "K-k+", False),
        ("K", "C+c+E-e+K-", False),
        ("K", "k+", None),  # little k says nothing about K
        ("K", "k-", None),
        ("K", "SEE NOTE", None),
        ("K", "", None),
        ("k", "K-k+", True),
        ("E", "E+e-", True),
        ("e", "E+e-", False),
        ("c", "C+c-", False),
        ("Jka", "Jk(a+b-)", True),
        ("Jkb", "Jk(a+b-)", False),
        ("Fya", "Fy(a-b+)", False),
        ("Fyb", "Fy(a-b+)", True),
        ("JKA", "Jk(a+)", True),  # multi-letter antigen names fold case
        ("X", "POS", None),  # unknown antigen
    ],
)
def test_antigen_status(kb: KnowledgeBase, antigen: str, value: str, expected: bool | None) -> None:
    assert kb.antigen_status(antigen, value) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K", "K"),
        ("Kell", "K"),
        ("KEL1", "K"),
        ("k", "k"),
        ("k Ag", "k"),
        ("CELLANO", "k"),
        ("C", "C"),
        ("c", "c"),
        ("LITTLE C", "c"),
        ("E antigen", "E"),
        ("e", "e"),
        ("Fy(a)", "Fya"),
        ("FYB", "Fyb"),
        ("Jk(b)", "Jkb"),
        ("S", "S"),
        ("s", "s"),
        ("POTASSIUM", None),
        ("K+", None),
        ("Kell antibody", None),
        ("HGB", None),
        ("", None),
    ],
)
def test_antigen_named(kb: KnowledgeBase, text: str, expected: str | None) -> None:
    assert kb.antigen_named(text) == expected


# ---------------------------------------------------------------------------- site files


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_site_override(tmp_path: Path) -> None:
    site = write(
        tmp_path,
        """
default_window_months: 12
drugs:
  - id: daratumumab_sc
    local_codes: ["RX-DARA-SC"]
    window_months: 9
  - id: elranatamab
    enabled: false
tests:
  - id: antibody_screen
    local_codes: ["BBABS"]
    name_patterns: ['\\bSCREENING PANEL X\\b']
  - id: site_new_test
    category: iat_serology
    name: Site-only antibody screen variant
    local_codes: ["ZZ9"]
  - id: crossmatch
    enabled: false
interpretation:
  values:
    reactive: ['AGG']
""",
    )
    kb = load_knowledge_base([site])
    assert kb.default_window_months == 12
    assert kb.window_months(kb.drugs["daratumumab_iv"]) == 12
    sc = kb.drugs["daratumumab_sc"]
    assert kb.window_months(sc) == 9
    # only the keys given changed
    assert sc.name == "Daratumumab and hyaluronidase-fihj (SC)"
    assert sc.rxnorm == ["2375136", "2375141"]
    assert drug_id(kb, Coded("RX-DARA-SC", "", "L")) == "daratumumab_sc"
    # a disabled drug is still recognised (callers check enabled) ...
    elranatamab = kb.drug_for_text("Elrexfio")
    assert elranatamab is not None and not elranatamab.enabled
    # local codes and patterns are added to ours
    assert kb.categorize(Coded("BBABS", "", "99LAB")) == {IAT}
    assert kb.categorize(Coded("890-4", "", "LN")) == {IAT}
    assert kb.categorize(Coded("", "SCREENING PANEL X", "")) == {IAT}
    assert kb.categorize(Coded("", "ANTIBODY SCREEN", "")) == {IAT}
    assert "\\bABSC(R|RN)?\\b" in kb.tests["antibody_screen"].name_patterns
    # a new test
    assert kb.categorize(Coded("ZZ9", "", "L")) == {IAT}
    assert kb.tests["site_new_test"].name == "Site-only antibody screen variant"
    # a disabled test is not matched
    assert kb.categorize(Coded("", "AHG CROSSMATCH", "")) == frozenset()
    assert kb.categorize(Coded("1250-0", "", "LN")) == frozenset()
    # vocabulary added, ours kept
    assert kb.is_reactive("AGG") is True
    assert kb.is_reactive("POS") is True


def test_site_files_apply_in_order(tmp_path: Path) -> None:
    first = write(tmp_path, "default_window_months: 12\n", "a.yaml")
    second = write(tmp_path, "default_window_months: 9\n", "b.yaml")
    assert load_knowledge_base([first, second]).default_window_months == 9
    assert load_knowledge_base([second, first]).default_window_months == 12


def test_site_adds_a_drug(tmp_path: Path) -> None:
    site = write(
        tmp_path,
        """
drugs:
  - id: magrolimab
    name: Magrolimab
    drug_class: other
    generic_names: [magrolimab]
    effects: [rbc_serology]
""",
    )
    kb = load_knowledge_base([site])
    assert drug_id(kb, Coded("", "MAGROLIMAB 1 MG/KG", "")) == "magrolimab"
    assert [m.drug.id for m in kb.mentions("on magrolimab")] == ["magrolimab"]


def test_empty_site_file_changes_nothing(tmp_path: Path) -> None:
    kb = load_knowledge_base([write(tmp_path, "")])
    assert kb.default_window_months == 6


def test_example_site_file_loads() -> None:
    example = DEFAULT_KNOWLEDGE_DIR.parent / "site.example.yaml"
    kb = load_knowledge_base([example])
    assert kb.default_window_months == 12
    assert not kb.drugs["elranatamab"].enabled


# ---------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (
            "drugs:\n  - id: daratumumab_iv\n  - id: daratumumab_sc\n    effects: [rbc]\n",
            "drugs[1].effects[0]",
            "'rbc' is not one of rbc_serology, spep_ife, cd38_flow",
        ),
        (
            "tests:\n  - id: antibody_screen\n    name_patterns: ['(unclosed']\n",
            "tests[0].name_patterns[0]",
            "bad regular expression",
        ),
        (
            "tests:\n  - id: antibody_screen\n    colour: red\n",
            "tests[0].colour",
            "unknown key",
        ),
        ("colour: red\n", "colour", "unknown key"),
        (
            "drugs:\n  - id: x_one\n    name: X\n    drug_class: other\n"
            "  - id: x_one\n    name: Y\n    drug_class: other\n",
            "drugs[1].id",
            "duplicate id 'x_one' (also drugs[0])",
        ),
        (
            "tests:\n  - id: t_new\n    category: ife\n    name: T\n    loinc: ['890-5']\n",
            "tests[0].loinc[0]",
            "check digit",
        ),
        (
            "tests:\n  - id: t_new\n    category: serology\n    name: T\n",
            "tests[0].category",
            "'serology' is not one of iat_serology, abo_rh",
        ),
        (
            "drugs:\n  - id: daratumumab_iv\n    ndc: ['5789-502']\n",
            "drugs[0].ndc[0]",
            "4-digit labeler",
        ),
        (
            "drugs:\n  - id: daratumumab_iv\n    hcpcs: ['9145']\n",
            "drugs[0].hcpcs[0]",
            "HCPCS",
        ),
        (
            "drugs:\n  - id: daratumumab_iv\n    window_months: 0\n",
            "drugs[0].window_months",
            "greater than or equal to 1",
        ),
        (
            "drugs:\n  - id: new_drug\n    generic_names: [newmab]\n",
            "drugs[0].name",
            "required key missing",
        ),
        ("drugs:\n  - name: nameless\n", "drugs[0].id", "required key missing"),
        ("drugs: {id: x}\n", "drugs", "must be a list"),
        ("default_window_months: 0\n", "default_window_months", "1-120"),
        ("default_window_months: six\n", "default_window_months", "1-120"),
        (
            "interpretation:\n  values:\n    reactive: ['(x']\n",
            "interpretation.values.reactive[0]",
            "bad regular expression",
        ),
        (
            "interpretation:\n  mprotein:\n    heavy_light: ['IgG kappa']\n",
            "interpretation.mprotein.heavy_light",
            "named groups",
        ),
        (
            "drugs:\n  - id: elotuzumab\n    ndc: ['57894-0502']\n",
            "",
            "NDC '578940502' is given for both daratumumab_iv and elotuzumab",
        ),
        (
            "drugs:\n  - id: teclistamab\n    text_aliases: [dara]\n",
            "",
            "alias 'dara' is given for both daratumumab_iv and teclistamab",
        ),
        ("drugs: [\n", "", "not valid YAML"),
        ("default_window_months: 6\ndefault_window_months: 12\n", "", "duplicate key"),
        ("- a\n- b\n", "", "must be a mapping"),
    ],
)
def test_bad_site_file(tmp_path: Path, text: str, where: str, what: str) -> None:
    site = write(tmp_path, text)
    with pytest.raises(KnowledgeBaseError) as err:
        load_knowledge_base([site])
    message = str(err.value)
    assert message.startswith(f"{site}: ")
    assert f": {where}: " in message or not where
    assert what in message


def test_missing_site_file(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="cannot read"):
        load_knowledge_base([tmp_path / "nope.yaml"])


def test_missing_base_directory(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match=r"drugs\.yaml, tests\.yaml, interpretation\.yaml"):
        load_knowledge_base(base_dir=tmp_path)


def copy_base(tmp_path: Path) -> Path:
    base = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_KNOWLEDGE_DIR, base)
    return base


def test_explicit_base_directory(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    kb = load_knowledge_base(base_dir=base)
    assert set(kb.drugs) == set(load_knowledge_base().drugs)


def test_bad_base_file_is_named(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    drugs = base / "drugs.yaml"
    drugs.write_text(
        drugs.read_text(encoding="utf-8").replace("effects: [spep_ife]", "effects: [spep]"),
        encoding="utf-8",
    )
    with pytest.raises(KnowledgeBaseError) as err:
        load_knowledge_base(base_dir=base)
    assert str(err.value).startswith(f"{drugs}: drugs[4].effects[0]: 'spep' is not one of")


def test_duplicate_id_in_base_file(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    tests = base / "tests.yaml"
    text = tests.read_text(encoding="utf-8").replace("- id: antibody_screen", "- id: abo_rh")
    tests.write_text(text, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match=r"tests\[\d+\]\.id: duplicate id 'abo_rh'"):
        load_knowledge_base(base_dir=base)


# ---------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("body", "check"),
    [("890", 4), ("883", 9), ("10331", 7), ("24351", 9), ("1159", 3), ("1250", 0), ("34532", 2)],
)
def test_loinc_check_digit(body: str, check: int) -> None:
    assert loinc_check_digit(body) == check


def test_every_catalog_entry_cites_a_source(kb: KnowledgeBase) -> None:
    for test in kb.tests.values():
        assert test.sources, test.id
    for drug in kb.drugs.values():
        if drug.effects:
            assert drug.sources, drug.id
