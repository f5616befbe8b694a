"""The immunoglobulin-therapy rules, from ER7 through the translator and the engine: passive
antibodies after IVIG/SCIG/RhIG, a positive DAT, IVIG prophylaxis with a bispecific, low IgG
(units), low IgA+IgM, the HBV screen in baseline-workup, and the site settings. Each positive
has its negative."""

from __future__ import annotations

from pathlib import Path

import pytest

from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId
from lisguard.domain.kb_models import ImmunoglobulinRules
from lisguard.domain.knowledge import KnowledgeBase, KnowledgeBaseError, load_knowledge_base
from lisguard.domain.lab_values import number, reference_low
from tests.unit.test_real_feeds import Feed, hl7

R = Recommendation


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def site_kb(tmp_path: Path, text: str) -> KnowledgeBase:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_knowledge_base([path])


def rxa(cid: str, pid: str, when: str, drug: str, amount: str = "", units: str = "") -> str:
    """An administration (RAS^O17) of `drug` (a CE: code^text^system)."""
    return hl7(
        cid,
        when,
        "RAS^O17",
        f"PID|1||{pid}^^^HOSP^MR",
        f"ORC|RE|RX-{cid}",
        f"RXA|0|1|{when}||{drug}|{amount}|{units}",
        "RXR|IV",
    )


def order(cid: str, pid: str, when: str, drug: str) -> str:
    """A pharmacy order (RDE^O11) of `drug`, never given."""
    return hl7(
        cid,
        when,
        "RDE^O11",
        f"PID|1||{pid}^^^HOSP^MR",
        f"ORC|NW|RX-{cid}|||||^^^{when}",
        f"RXE|^^^{when}|{drug}|1||EA",
    )


def lab(cid: str, pid: str, when: str, service: str, *obx: str, mtype: str = "ORU^R01") -> str:
    return hl7(
        cid,
        when,
        mtype,
        f"PID|1||{pid}^^^HOSP^MR",
        f"ORC|RE|ORD-{cid}",
        f"OBR|1|ORD-{cid}||{service}|||{when}",
        *obx,
    )


def obx(
    n: int, code: str, vtype: str, value: str, units: str = "", ref: str = "", flag: str = ""
) -> str:
    return f"OBX|{n}|{vtype}|{code}||{value}|{units}|{ref}|{flag}|||F"


PRIVIGEN = "44206-0438-40^PRIVIGEN 10% 20 G/200 ML^NDC"
HIZENTRA = "^Hizentra 20% SC^L"
RHOGAM = "J2790^RhoGAM 300 mcg^HCPCS"
DARA = "J9145^daratumumab^HCPCS"
TECLISTAMAB = "J9380^teclistamab-cqyv^HCPCS"
ELRANATAMAB = "^ELREXFIO (elranatamab-bcmm) 76 MG^L"
SCREEN = "890-4^Antibody screen^LN"


def rules_of(alerts: list[Alert]) -> list[str]:
    return [a.rule.value for a in alerts]


# ---------------------------------------------------------------------- ig-passive-antibody


def test_screen_three_weeks_after_ivig_may_carry_passive_antibodies(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    assert feed.send(rxa("A1", "P1", "20260301100000", PRIVIGEN, "30", "g")) == []
    alerts = feed.send(lab("S1", "P1", "20260322080000", SCREEN, mtype="ORM^O01"))
    assert rules_of(alerts) == ["ig-passive-antibody"]
    alert = alerts[0]
    assert alert.recommendations == (R.PASSIVE_ANTIBODY_FROM_IG,)
    assert alert.audience is Audience.BLOOD_BANK
    assert alert.drugs == ("privigen",)
    assert "anti-A, anti-B and anti-D" in alert.text
    assert "last given 2026-03-01" in alert.text and "30 g" in alert.text
    state = feed.states["P1^HOSP"]
    assert state.exposures["privigen"].doses == 1
    assert state.exposures["privigen"].grams == 30.0


def test_screen_four_months_after_ivig_is_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P2", "20260101100000", PRIVIGEN, "30", "g"))
    assert feed.send(lab("S1", "P2", "20260502080000", SCREEN)) == []


def test_an_ivig_order_that_was_never_given_opens_no_window(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    assert feed.send(order("O1", "P3", "20260301100000", PRIVIGEN)) == []
    assert feed.send(lab("S1", "P3", "20260310080000", SCREEN)) == []


def test_ivig_refused_is_no_dose(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    text = rxa("A1", "P4", "20260301100000", PRIVIGEN, "30", "g").replace(
        "|30|g", "|30|g" + "|" * 13 + "RE"
    )
    feed.send(text)
    assert feed.send(lab("S1", "P4", "20260310080000", SCREEN)) == []


def test_rhig_names_anti_d_and_leaves_infectious_serology_alone(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P5", "20260301100000", RHOGAM, "300", "ug"))
    alerts = feed.send(lab("S1", "P5", "20260305080000", SCREEN))
    assert rules_of(alerts) == ["ig-passive-antibody"]
    assert "passive anti-D " in alerts[0].text and "anti-A" not in alerts[0].text
    cmv = lab("S2", "P5", "20260305080000", "^CMV IgG^L", obx(1, "^CMV IgG^L", "ST", "Positive"))
    assert feed.send(cmv) == []
    # an RhIG dose in micrograms is no gram amount
    assert feed.states["P5^HOSP"].exposures["rho_d_immune_globulin"].grams == 0.0003


def test_infectious_serology_after_scig_names_the_passive_antibodies(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P6", "20260301100000", HIZENTRA, "10", "g"))
    feed.send(rxa("A2", "P6", "20260308100000", HIZENTRA, "10", "g"))
    hbc = lab(
        "S1",
        "P6",
        "20260320080000",
        "HEPB^Hepatitis B serology^L",
        obx(1, "HBCT^Hep B core Ab total^L^13952-7^^LN", "CWE", "REA^Reactive"),
        obx(2, "HBSAG^Hep B surface Ag^L^5196-1^^LN", "CWE", "NR^Nonreactive"),
    )
    alerts = feed.send(hbc)
    assert rules_of(alerts) == ["ig-passive-antibody"]
    alert = alerts[0]
    assert alert.audience is Audience.SEROLOGY
    assert alert.text.count("anti-HBc") >= 1 and "2 doses, 20 g" in alert.text
    # HBsAg is an antigen test: alone it is never passive
    hbs = lab(
        "S2", "P6", "20260321080000", "5196-1^HBsAg^LN", obx(1, "5196-1^HBsAg^LN", "ST", "Negative")
    )
    assert feed.send(hbs) == []
    state = feed.states["P6^HOSP"]
    assert {r.marker for r in state.hbv} == {"anti_hbc", "hbsag"}
    assert next(r for r in state.hbv if r.marker == "anti_hbc").reactive is True


def test_many_grams_are_said(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    for i, day in enumerate(("01", "08", "15")):
        feed.send(rxa(f"A{i}", "P7", f"202603{day}100000", PRIVIGEN, "40", "g"))
    alerts = feed.send(
        lab("S1", "P7", "20260320080000", "^CMV IgG Ab^L", obx(1, "^CMV IgG Ab^L", "NM", "2.3"))
    )
    assert "120 g given in all" in alerts[0].text


def test_a_resent_dose_is_not_counted_twice(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P8", "20260301100000", PRIVIGEN, "30", "g"))
    feed.send(rxa("A1-RESEND", "P8", "20260301100000", PRIVIGEN, "30", "g"))
    exp = feed.states["P8^HOSP"].exposures["privigen"]
    assert (exp.doses, exp.grams) == (1, 30.0)


def test_vxu_with_cvx_87_is_an_ivig_dose(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    vxu = hl7(
        "V1",
        "20260301120000",
        "VXU^V04",
        "PID|1||P9^^^HOSP^MR",
        "ORC|RE||V1",
        "RXA|0|1|20260301100000||87^IGIV^CVX|25|g",
    )
    feed.send(vxu)
    assert rules_of(feed.send(lab("S1", "P9", "20260310080000", SCREEN))) == ["ig-passive-antibody"]


def test_on_daratumumab_bb_serology_fires_as_well(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P10", "20260201100000", DARA, "1100", "mg"))
    feed.send(rxa("A1", "P10", "20260301100000", PRIVIGEN, "30", "g"))
    alerts = feed.send(lab("S1", "P10", "20260310080000", SCREEN))
    assert rules_of(alerts) == ["bb-serology", "ig-passive-antibody"]
    # a dose of daratumumab is no immunoglobulin: its grams are not counted as IVIG
    assert feed.states["P10^HOSP"].exposures["daratumumab_iv"].grams == 1.1


# ---------------------------------------------------------------------- positive-dat


def dat(cid: str, pid: str, when: str, value: str) -> str:
    return lab(
        cid,
        pid,
        when,
        "DAT^Direct antiglobulin test^L",
        obx(1, "1007-4^DAT polyspecific^LN", "ST", value),
        obx(2, "^Coombs control cell^L", "ST", "POS"),
    )


def test_positive_dat_on_daratumumab(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P20", "20260201100000", DARA))
    alerts = feed.send(dat("T1", "P20", "20260301080000", "2+"))
    assert rules_of(alerts) == ["positive-dat"]  # the DAT alone never raises bb-serology
    assert alerts[0].recommendations == (R.POSITIVE_DAT_MAY_BE_THERAPY,)
    assert alerts[0].audience is Audience.BLOOD_BANK
    assert "Daratumumab" in alerts[0].text


def test_negative_dat_and_a_positive_control_cell_are_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P21", "20260201100000", DARA))
    assert feed.send(dat("T1", "P21", "20260301080000", "NEG")) == []


def test_positive_dat_after_ivig_without_anti_cd38(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P22", "20260201100000", PRIVIGEN, "60", "g"))
    alerts = feed.send(dat("T1", "P22", "20260315080000", "POSITIVE"))
    assert sorted(rules_of(alerts)) == ["ig-passive-antibody", "positive-dat"]
    assert (
        "passive antibodies may coat"
        in next(a for a in alerts if a.rule == RuleId.POSITIVE_DAT).text
    )


def test_positive_dat_with_neither_is_silent(kb: KnowledgeBase) -> None:
    assert Feed(kb).send(dat("T1", "P23", "20260315080000", "3+")) == []


# ---------------------------------------------------------------------- ivig-prophylaxis


def test_first_bispecific_dose_without_ivig_prompts_prophylaxis_once_per_course(
    kb: KnowledgeBase,
) -> None:
    feed = Feed(kb)
    alerts = feed.send(rxa("B1", "P30", "20260105090000", TECLISTAMAB, "0.06", "mg/kg"))
    assert rules_of(alerts) == ["ivig-prophylaxis"]
    alert = alerts[0]
    assert alert.recommendations == (R.PRIMARY_IVIG_PROPHYLAXIS,)
    assert alert.audience is Audience.CLINIC and alert.order == "course 2026-01-05"
    assert feed.send(rxa("B2", "P30", "20260108090000", TECLISTAMAB)) == []
    # eight months after the last dose a new course begins: prompted again
    again = feed.send(rxa("B3", "P30", "20260915090000", TECLISTAMAB))
    assert [(a.rule.value, a.order) for a in again] == [("ivig-prophylaxis", "course 2026-09-15")]


def test_ivig_given_ten_days_before_keeps_it_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P31", "20260101090000", PRIVIGEN, "30", "g"))
    assert feed.send(rxa("B1", "P31", "20260111090000", ELRANATAMAB)) == []


def test_ivig_given_five_weeks_before_does_not(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P32", "20260101090000", PRIVIGEN, "30", "g"))
    assert rules_of(feed.send(rxa("B1", "P32", "20260208090000", ELRANATAMAB))) == [
        "ivig-prophylaxis"
    ]


def test_ivig_ordered_with_the_bispecific_keeps_it_silent(kb: KnowledgeBase) -> None:
    both = hl7(
        "O1",
        "20260110080000",
        "RDE^O11",
        "PID|1||P33^^^HOSP^MR",
        "ORC|NW|RX-1|||||^^^20260112",
        "RXE|^^^20260112|^talquetamab-tgvs^L|1||EA",
        "ORC|NW|RX-2|||||^^^20260112",
        f"RXE|^^^20260112|{PRIVIGEN}|1||EA",
    )
    assert Feed(kb).send(both) == []


def test_rhig_is_no_prophylaxis(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("A1", "P34", "20260101090000", RHOGAM))
    assert rules_of(feed.send(rxa("B1", "P34", "20260105090000", TECLISTAMAB))) == [
        "ivig-prophylaxis"
    ]


# ---------------------------------------------------------------------- hypogammaglobulinemia


def igg(cid: str, pid: str, when: str, value: str, units: str, ref: str = "") -> str:
    return lab(cid, pid, when, "2465-3^IgG^LN", obx(1, "2465-3^IgG^LN", "NM", value, units, ref))


@pytest.mark.parametrize(
    ("value", "units", "ref", "fires"),
    [
        ("350", "mg/dL", "700-1600", True),
        ("3.5", "g/L", "7.0-16.0", True),
        ("3500", "mg/L", "7000-16000", True),
        ("350", "", "700-1600", True),  # unit read off the range: mg/dL
        ("3.5", "", "7.0-16.0", True),  # g/L
        ("3500", "", "7000-16000", True),  # mg/L
        ("400", "mg/dL", "", False),  # not below the threshold
        ("4.5", "g/L", "", False),
        ("350", "", "", False),  # no unit, no range: never guessed
        ("350", "mmol/L", "", False),  # not a mass concentration
    ],
)
def test_low_igg_is_read_in_any_unit(
    kb: KnowledgeBase, value: str, units: str, ref: str, fires: bool
) -> None:
    feed = Feed(kb)
    feed.send(rxa("B1", "P40", "20260105090000", TECLISTAMAB))
    alerts = feed.send(igg("G1", "P40", "20260201080000", value, units, ref))
    assert rules_of(alerts) == (["hypogammaglobulinemia"] if fires else [])
    if fires:
        assert alerts[0].recommendations == (R.IVIG_REPLACEMENT_REVIEW,)
        assert alerts[0].audience is Audience.CLINIC
    assert feed.states["P40^HOSP"].immunoglobulins["igg"].value == float(value)


def test_low_igg_on_daratumumab_says_the_igg_includes_the_drug(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P41", "20260105090000", DARA))
    alerts = feed.send(igg("G1", "P41", "20260201080000", "350", "mg/dL"))
    assert rules_of(alerts) == ["hypogammaglobulinemia"]
    assert alerts[0].recommendations == (R.IVIG_REPLACEMENT_REVIEW, R.IGG_INCLUDES_PARAPROTEIN)
    assert "therapeutic IgG antibody" in alerts[0].text


def test_own_igg_mprotein_counts_too(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    ife = lab(
        "I1",
        "P42",
        "20251201080000",
        "25700-6^Serum immunofixation^LN",
        obx(1, "25700-6^IFE interpretation^LN", "TX", "Monoclonal IgG kappa band detected"),
    )
    feed.send(ife)
    feed.send(rxa("B1", "P42", "20260105090000", TECLISTAMAB))
    alerts = feed.send(igg("G1", "P42", "20260201080000", "3.1", "g/L"))
    assert alerts[0].recommendations == (R.IVIG_REPLACEMENT_REVIEW, R.IGG_INCLUDES_PARAPROTEIN)
    assert "IgG kappa M-protein" in alerts[0].text


def test_low_igg_without_exposure_is_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    assert feed.send(igg("G1", "P43", "20260201080000", "250", "mg/dL")) == []
    # kept all the same: the patient may start therapy
    assert feed.states["P43^HOSP"].immunoglobulins["igg"].mg_dl == 250.0


def test_low_igg_after_the_window_is_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P44", "20250105090000", DARA))
    assert feed.send(igg("G1", "P44", "20260201080000", "250", "mg/dL")) == []


def panel(cid: str, pid: str, when: str, iga: str, igm: str, igg_value: str = "900") -> str:
    return lab(
        cid,
        pid,
        when,
        "IGP^Immunoglobulins quantitative^L",
        obx(1, "2465-3^IgG^LN", "NM", igg_value, "mg/dL", "700-1600"),
        obx(2, "2458-8^IgA^LN", "NM", iga, "mg/dL", "70-400", "L" if float(iga) < 70 else ""),
        obx(3, "2472-9^IgM^LN", "NM", igm, "mg/dL", "40-230"),
    )


def test_iga_and_igm_both_low_fire_with_a_normal_igg(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P45", "20260105090000", "J9227^isatuximab-irfc^HCPCS"))
    alerts = feed.send(panel("G1", "P45", "20260201080000", "40", "20"))
    assert rules_of(alerts) == ["hypogammaglobulinemia"]
    assert "IgA and IgM both below" in alerts[0].text


def test_iga_low_alone_is_silent(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P46", "20260105090000", "J9227^isatuximab-irfc^HCPCS"))
    assert feed.send(panel("G1", "P46", "20260201080000", "40", "90")) == []


def test_iga_and_igm_low_months_apart_do_not_pair(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P47", "20260105090000", DARA))
    one = lab(
        "G1",
        "P47",
        "20260110080000",
        "2458-8^IgA^LN",
        obx(1, "2458-8^IgA^LN", "NM", "40", "mg/dL", "70-400"),
    )
    two = lab(
        "G2",
        "P47",
        "20260501080000",
        "2472-9^IgM^LN",
        obx(1, "2472-9^IgM^LN", "NM", "20", "mg/dL", "40-230"),
    )
    assert feed.send(one) == [] and feed.send(two) == []


def test_igg_in_a_dat_panel_is_a_reagent_not_a_level(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("D1", "P48", "20260105090000", DARA))
    text = lab(
        "T1",
        "P48",
        "20260201080000",
        "DAT^Direct antiglobulin test^L",
        obx(1, "^IgG^L", "NM", "0", ""),
        obx(2, "^C3d^L", "ST", "NEG"),
    )
    feed.send(text)
    assert "igg" not in feed.states["P48^HOSP"].immunoglobulins


# ---------------------------------------------------------------------- HBV in baseline-workup


def hbv(cid: str, pid: str, when: str, *markers: str) -> str:
    codes = {
        "hbsag": "5196-1^HBsAg^LN",
        "anti_hbc": "16933-4^HBc Ab^LN",
        "anti_hbs": "16935-9^HBs Ab^LN",
    }
    return lab(
        cid,
        pid,
        when,
        "HEPB^Hepatitis B screen^L",
        *(obx(i + 1, codes[m], "ST", "Nonreactive") for i, m in enumerate(markers)),
    )


def test_first_dose_without_hbv_serology_asks_for_it(kb: KnowledgeBase) -> None:
    alerts = Feed(kb).send(rxa("D1", "P50", "20260105090000", DARA))
    assert rules_of(alerts) == ["baseline-workup"]
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE in alerts[0].recommendations
    assert "no HBsAg and anti-HBc before the first dose" in alerts[0].text


def test_hbv_on_file_before_the_first_dose_is_enough(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(hbv("H1", "P51", "20251220080000", "hbsag", "anti_hbc"))
    alerts = feed.send(rxa("D1", "P51", "20260105090000", DARA))
    assert alerts[0].recommendations == (R.BASELINE_TYPE_AND_SCREEN, R.PRETREATMENT_PHENOTYPE)


def test_only_hbsag_on_file_names_what_is_missing(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(hbv("H1", "P52", "20251220080000", "hbsag"))
    alerts = feed.send(rxa("D1", "P52", "20260105090000", DARA))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE in alerts[0].recommendations
    assert "no anti-HBc before" in alerts[0].text


def test_hbv_ordered_before_the_first_dose_counts_as_under_way(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    ordered = hl7(
        "H1",
        "20260104080000",
        "ORM^O01",
        "PID|1||P53^^^HOSP^MR",
        "ORC|NW|HB1",
        "OBR|1|HB1||5196-1^HBsAg^LN|||20260104080000",
        "ORC|NW|HB2",
        "OBR|2|HB2||16933-4^Hepatitis B core Ab total^LN|||20260104080000",
    )
    feed.send(ordered)
    alerts = feed.send(rxa("D1", "P53", "20260105090000", DARA))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE not in alerts[0].recommendations


def test_typing_on_file_leaves_the_hbv_prompt_alone_for_the_clinic(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    geno = lab(
        "G1",
        "P54",
        "20251201080000",
        "^RBC genotype^L",
        obx(1, "^RBC genotype^L", "ST", "KEL*02/KEL*02"),
    )
    feed.send(geno)
    alerts = feed.send(rxa("D1", "P54", "20260105090000", DARA))
    assert [(a.rule.value, a.recommendations, a.audience, a.severity.value) for a in alerts] == [
        ("baseline-workup", (R.HBV_SCREEN_BEFORE_FIRST_DOSE,), Audience.CLINIC, "medium")
    ]


def test_a_patient_already_dosed_without_hbv_is_asked_once(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    first = feed.send(rxa("D1", "P55", "20260105090000", DARA))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE in first[0].recommendations
    assert feed.send(rxa("D2", "P55", "20260112090000", DARA)) == []  # asked already
    # a patient whose state predates the HBV prompt (dosed, never asked) is asked at the next dose
    state = feed.states["P55^HOSP"]
    state.hbv_prompted = None
    later = feed.send(rxa("D3", "P55", "20260119090000", DARA))
    assert [(a.rule.value, a.order, a.recommendations) for a in later] == [
        ("baseline-workup", "HBV", (R.HBV_SCREEN_BEFORE_FIRST_DOSE,))
    ]
    assert "on file (already on treatment)" in later[0].text
    assert feed.send(rxa("D4", "P55", "20260126090000", DARA)) == []


def test_isatuximab_gets_the_hbv_prompt_too(kb: KnowledgeBase) -> None:
    # label grounds for daratumumab; ASCO 2020 for any systemic anticancer therapy
    alerts = Feed(kb).send(rxa("D1", "P56", "20260105090000", "J9227^isatuximab-irfc^HCPCS"))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE in alerts[0].recommendations


# ---------------------------------------------------------------------- site settings


def test_site_switches_the_family_off(tmp_path: Path) -> None:
    kb = site_kb(tmp_path, "immunoglobulin:\n  enabled: false\n")
    feed = Feed(kb)
    feed.send(rxa("A1", "P60", "20260301100000", PRIVIGEN, "30", "g"))
    assert feed.send(lab("S1", "P60", "20260310080000", SCREEN)) == []
    assert feed.send(rxa("B1", "P60", "20260311090000", TECLISTAMAB)) == []
    alerts = feed.send(rxa("D1", "P61", "20260105090000", DARA))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE not in alerts[0].recommendations


def test_site_changes_windows_and_threshold(tmp_path: Path) -> None:
    kb = site_kb(
        tmp_path,
        "immunoglobulin:\n  passive_window_months: 6\n  igg_threshold: 5 g/L\n"
        "  prophylaxis_window_days: 60\n",
    )
    feed = Feed(kb)
    feed.send(rxa("A1", "P62", "20260101100000", PRIVIGEN, "30", "g"))
    assert rules_of(feed.send(lab("S1", "P62", "20260502080000", SCREEN))) == [
        "ig-passive-antibody"
    ]
    # IVIG 45 days before the bispecific: inside a 60-day window
    assert feed.send(rxa("B1", "P62", "20260215090000", TECLISTAMAB)) == []
    alerts = feed.send(igg("G1", "P62", "20260301080000", "450", "mg/dL"))
    assert rules_of(alerts) == ["hypogammaglobulinemia"]
    assert "below 500 mg/dL" in alerts[0].text


def test_site_switches_one_rule_off(tmp_path: Path) -> None:
    kb = site_kb(tmp_path, "immunoglobulin:\n  prophylaxis: false\n  hbv_markers: [hbsag]\n")
    feed = Feed(kb)
    assert feed.send(rxa("B1", "P63", "20260105090000", TECLISTAMAB)) == []
    feed.send(hbv("H1", "P64", "20251220080000", "hbsag"))
    alerts = feed.send(rxa("D1", "P64", "20260105090000", DARA))
    assert R.HBV_SCREEN_BEFORE_FIRST_DOSE not in alerts[0].recommendations


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("immunoglobulin:\n  igg_threshold: 400\n", "igg_threshold"),
        ("immunoglobulin:\n  igg_threshold: 400 mmol/L\n", "igg_threshold"),
        ("immunoglobulin:\n  passive_window_months: 0\n", "passive_window_months"),
        ("immunoglobulin:\n  hbv_markers: [hbeag]\n", "hbv_markers"),
        ("immunoglobulin:\n  rules: on\n", "rules"),
        ("immunoglobulin: yes\n", "immunoglobulin"),
    ],
)
def test_bad_site_settings_name_the_key(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(KnowledgeBaseError, match=error):
        site_kb(tmp_path, text)


def test_threshold_units() -> None:
    for text in ("400 mg/dL", "4 g/L", "4000 mg/L", "0.4 g/dL", "400mg/dl"):
        assert ImmunoglobulinRules(igg_threshold=text).igg_threshold_mg_dl == pytest.approx(400)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("350", 350.0), ("<5", 5.0), ("3,5", 3.5), (" 12.40", 12.4), ("NEG", None)],
)
def test_number(value: str, expected: float | None) -> None:
    assert number(value) == expected


@pytest.mark.parametrize(
    ("text", "low"),
    [
        ("700-1600", 700.0),
        ("7.0 - 16.0 g/L", 7.0),
        (">=70", 70.0),
        ("(40-230)", 40.0),
        ("<5", None),
        ("", None),
    ],
)
def test_reference_low(text: str, low: float | None) -> None:
    assert reference_low(text) == low


def test_igg_reported_with_the_electrophoresis_is_a_level(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(rxa("B1", "P49", "20260105090000", TECLISTAMAB))
    spep = lab(
        "E1",
        "P49",
        "20260201080000",
        "24351-9^Protein electrophoresis panel^LN",
        obx(1, "33358-3^M-protein^LN", "NM", "0.4", "g/dL"),
        obx(2, "2465-3^IgG^LN", "NM", "310", "mg/dL", "700-1600", "L"),
        obx(3, "^Interpretation^L", "TX", "IgG kappa monoclonal protein"),
    )
    alerts = feed.send(spep)
    assert rules_of(alerts) == ["hypogammaglobulinemia"]
    assert feed.states["P49^HOSP"].immunoglobulins["igg"].below_range is True


def test_a_sample_drawn_before_the_first_dose_is_not_passive(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    feed.send(order("O1", "P70", "20260225100000", PRIVIGEN))  # planned for 03-01
    feed.send(rxa("A1", "P70", "20260310100000", PRIVIGEN, "30", "g"))
    drawn_before = lab(
        "S1", "P70", "20260305080000", "^CMV IgG^L", obx(1, "^CMV IgG^L", "ST", "Pos")
    )
    assert feed.send(drawn_before) == []
    after = lab("S2", "P70", "20260312080000", "^CMV IgG^L", obx(1, "^CMV IgG^L", "ST", "Pos"))
    assert rules_of(feed.send(after)) == ["ig-passive-antibody"]


def dispense(cid: str, pid: str, when: str, drug: str) -> str:
    return hl7(
        cid,
        when,
        "RDS^O13",
        f"PID|1||{pid}^^^HOSP^MR",
        f"ORC|RE|RX-{cid}",
        f"RXD|1|{drug}|{when}|1|EA",
    )


def test_a_dispense_before_the_first_dose_starts_the_course(kb: KnowledgeBase) -> None:
    feed = Feed(kb)
    assert rules_of(feed.send(dispense("X1", "P71", "20260104090000", TECLISTAMAB))) == [
        "ivig-prophylaxis"
    ]
    assert feed.send(rxa("B1", "P71", "20260105090000", TECLISTAMAB)) == []
    first = feed.send(dispense("X2", "P72", "20260104090000", DARA))
    assert [a.recommendations for a in first] == [
        (R.BASELINE_TYPE_AND_SCREEN, R.PRETREATMENT_PHENOTYPE, R.HBV_SCREEN_BEFORE_FIRST_DOSE)
    ]


@pytest.mark.parametrize(
    "note",
    [
        "Baseline type and screen pre-daratumumab",
        "Baseline before starting daratumumab",
        "Planned daratumumab next week",
        "Baseline prior to first dose of teclistamab",
    ],
)
def test_a_note_about_therapy_still_to_come_is_no_exposure(kb: KnowledgeBase, note: str) -> None:
    feed = Feed(kb)
    text = hl7(
        "N1",
        "20260102080000",
        "ORM^O01",
        "PID|1||P73^^^HOSP^MR",
        "ORC|NW|BB1",
        f"OBR|1|BB1||{SCREEN}|||20260102080000||||||{note}",
    )
    assert feed.send(text) == []
    assert feed.states.get("P73^HOSP") is None or not feed.states["P73^HOSP"].exposures
    # and the first order then gets its first-dose prompts
    first = feed.send(order("O1", "P73", "20260105090000", DARA))
    prophylaxis = feed.send(order("O2", "P73", "20260105090000", TECLISTAMAB))
    assert rules_of(first) == ["baseline-workup"] and first[0].order == ""
    assert rules_of(prophylaxis) == ["ivig-prophylaxis"]


def test_pre_transfusion_testing_for_a_treated_patient_still_counts(kb: KnowledgeBase) -> None:
    assert [m.drug.id for m in kb.mentions("Pre-transfusion testing for daratumumab patient")] == [
        "daratumumab_iv"
    ]
