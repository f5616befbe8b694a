"""Alerts: what lisguard tells the lab. Rule ids and recommendation codes are a stable contract."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator


class Severity(StrEnum):
    HIGH = "high"  # act before the sample is tested or the unit issued
    MEDIUM = "medium"  # read a result with the drug in mind
    LOW = "low"  # information


SEVERITY_RANK = {Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1}


class RuleId(StrEnum):
    BASELINE_WORKUP = "baseline-workup"
    BB_SEROLOGY = "bb-serology"
    SPEP_IFE = "spep-ife"
    FLOW_MRD = "flow-mrd"
    UNEXPLAINED_PANREACTIVITY = "unexplained-panreactivity"
    IG_PASSIVE_ANTIBODY = "ig-passive-antibody"
    IVIG_PROPHYLAXIS = "ivig-prophylaxis"
    HYPOGAMMAGLOBULINEMIA = "hypogammaglobulinemia"
    POSITIVE_DAT = "positive-dat"


class Audience(StrEnum):
    """Who acts on an alert: the bench or desk a delivery channel may be restricted to."""

    BLOOD_BANK = "blood_bank"  # the transfusion laboratory bench
    SEROLOGY = "serology"  # infectious-disease serology
    CLINIC = "clinic"  # the myeloma clinic or its pharmacy: they order, prescribe, infuse
    PROTEIN_LAB = "protein_lab"  # SPEP/IFE (immunology or special chemistry)
    FLOW_LAB = "flow_lab"  # flow cytometry


# The audience of each rule's alerts where the rule has one; ig-passive-antibody (blood bank or
# serology, by the test) and baseline-workup (clinic when only HBV serology is due) choose per
# alert. Alerts stored before the field existed read as their rule's.
RULE_AUDIENCE: dict[RuleId, Audience] = {
    RuleId.BASELINE_WORKUP: Audience.BLOOD_BANK,
    RuleId.BB_SEROLOGY: Audience.BLOOD_BANK,
    RuleId.SPEP_IFE: Audience.PROTEIN_LAB,
    RuleId.FLOW_MRD: Audience.FLOW_LAB,
    RuleId.UNEXPLAINED_PANREACTIVITY: Audience.BLOOD_BANK,
    RuleId.IG_PASSIVE_ANTIBODY: Audience.BLOOD_BANK,
    RuleId.IVIG_PROPHYLAXIS: Audience.CLINIC,
    RuleId.HYPOGAMMAGLOBULINEMIA: Audience.CLINIC,
    RuleId.POSITIVE_DAT: Audience.BLOOD_BANK,
}


class Recommendation(StrEnum):
    BASELINE_TYPE_AND_SCREEN = "BASELINE_TYPE_AND_SCREEN"
    PRETREATMENT_PHENOTYPE = "PRETREATMENT_PHENOTYPE"
    DTT_TREATED_REAGENT_CELLS = "DTT_TREATED_REAGENT_CELLS"
    KELL_NEGATIVE_UNITS = "KELL_NEGATIVE_UNITS"
    PHENOTYPE_MATCHED_UNITS = "PHENOTYPE_MATCHED_UNITS"
    DRUG_SPECIFIC_IFE_REFLEX = "DRUG_SPECIFIC_IFE_REFLEX"
    MASS_SPEC_MPROTEIN = "MASS_SPEC_MPROTEIN"
    CD38_INDEPENDENT_GATING = "CD38_INDEPENDENT_GATING"
    CHECK_ANTI_CD38_HISTORY = "CHECK_ANTI_CD38_HISTORY"
    ANTI_CD47_WORKUP = "ANTI_CD47_WORKUP"
    CD38_EPITOPE_MASKED = "CD38_EPITOPE_MASKED"
    PASSIVE_ANTIBODY_FROM_IG = "PASSIVE_ANTIBODY_FROM_IG"
    PRIMARY_IVIG_PROPHYLAXIS = "PRIMARY_IVIG_PROPHYLAXIS"
    IVIG_REPLACEMENT_REVIEW = "IVIG_REPLACEMENT_REVIEW"
    IGG_INCLUDES_PARAPROTEIN = "IGG_INCLUDES_PARAPROTEIN"
    HBV_SCREEN_BEFORE_FIRST_DOSE = "HBV_SCREEN_BEFORE_FIRST_DOSE"
    POSITIVE_DAT_MAY_BE_THERAPY = "POSITIVE_DAT_MAY_BE_THERAPY"


# One line each, shown next to the code on the technologist page and in the README.
RECOMMENDATION_TEXT: dict[Recommendation, str] = {
    Recommendation.BASELINE_TYPE_AND_SCREEN: (
        "Draw ABO/RhD and an antibody screen before the first anti-CD38 dose."
    ),
    Recommendation.PRETREATMENT_PHENOTYPE: (
        "Extended RBC phenotype (C, c, E, e, K, Jka, Jkb, Fya, Fyb, S, s) before the first dose;"
        " RBC genotype if already dosed."
    ),
    Recommendation.DTT_TREATED_REAGENT_CELLS: (
        "Use 0.2 M DTT-treated reagent cells for antibody screen/ID and AHG crossmatch."
    ),
    Recommendation.KELL_NEGATIVE_UNITS: (
        "DTT destroys Kell antigens, so anti-K cannot be excluded: give K-negative red cells."
    ),
    Recommendation.PHENOTYPE_MATCHED_UNITS: (
        "A pre-treatment phenotype/genotype is on file: select antigen-matched red cells."
    ),
    Recommendation.DRUG_SPECIFIC_IFE_REFLEX: (
        "Reflex to drug-specific IFE (daratumumab/isatuximab shift assay) before calling a small"
        " IgG-kappa band disease."
    ),
    Recommendation.MASS_SPEC_MPROTEIN: (
        "Mass spectrometry can tell the patient's M-protein from the therapeutic antibody."
    ),
    Recommendation.CD38_INDEPENDENT_GATING: (
        "Gate plasma cells without relying on CD38: multi-epitope CD38, VS38c, CD229, CD138."
    ),
    Recommendation.CHECK_ANTI_CD38_HISTORY: (
        "Panreactive screen: ask pharmacy/clinic about anti-CD38 (or anti-CD47) therapy before a"
        " full workup."
    ),
    Recommendation.ANTI_CD47_WORKUP: (
        "Anti-CD47 (magrolimab): DTT does not remove it; use a monoclonal anti-IgG that does not"
        " detect IgG4 (e.g. Gamma-clone) and alloadsorption, and antigen-matched units."
    ),
    Recommendation.CD38_EPITOPE_MASKED: (
        "Anti-CD38 therapy: CD38 on lymphoblasts may read falsely negative; use a CD38 antibody to"
        " an epitope the drug does not block, and do not classify blasts on CD38."
    ),
    Recommendation.PASSIVE_ANTIBODY_FROM_IG: (
        "Immunoglobulin (IVIG/SCIG/RhIG) given recently: antibodies found may be passive, from"
        " the product. Read a positive with the infusion date; test a pre-infusion sample or"
        " repeat after the window before calling it the patient's own."
    ),
    Recommendation.PRIMARY_IVIG_PROPHYLAXIS: (
        "Bispecific started with no immunoglobulin given: consider primary IVIG prophylaxis from"
        " the start of therapy, whatever the IgG level."
    ),
    Recommendation.IVIG_REPLACEMENT_REVIEW: (
        "Low immunoglobulins on anti-CD38 or bispecific therapy: review immunoglobulin"
        " replacement (IVIG/SCIG)."
    ),
    Recommendation.IGG_INCLUDES_PARAPROTEIN: (
        "Measured IgG includes the patient's IgG M-protein or a therapeutic IgG antibody: the"
        " functional IgG is lower than the number."
    ),
    Recommendation.HBV_SCREEN_BEFORE_FIRST_DOSE: (
        "Screen for hepatitis B (HBsAg and anti-HBc) before the first anti-CD38 dose; patients"
        " already on treatment with unknown serology too. Draw it before any IVIG."
    ),
    Recommendation.POSITIVE_DAT_MAY_BE_THERAPY: (
        "Positive DAT on anti-CD38 therapy or after immunoglobulin: the drug or passive antibody"
        " may coat the cells. Do not call it autoimmune or a transfusion reaction on the DAT"
        " alone."
    ),
}


class EvidenceItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    message: str
    location: str
    text: str
    time: datetime | None = None


class Alert(BaseModel):
    """One alert about one patient, rule and order."""

    model_config = ConfigDict(frozen=True)

    id: str
    rule: RuleId
    patient: str  # PID-3.1
    patient_authority: str = ""
    message: str  # MSH-10 of the message that raised it
    order: str
    severity: Severity
    recommendations: tuple[Recommendation, ...]
    text: str
    drugs: tuple[str, ...] = ()
    event_time: datetime | None = None
    location: str = ""
    evidence: tuple[EvidenceItem, ...] = Field(default=())
    sources: tuple[str, ...] = ()
    # MSH-11 of the message that raised it (HL7 table 0103): P production, T training, D
    # debugging. Stored alerts from before it existed read as P.
    processing_id: str = "P"
    # who acts on it (Audience); delivery channels may be restricted to some audiences
    audience: Audience = Audience.BLOOD_BANK
    # the second identifiers (PID-5 "FAMILY, GIVEN", PID-7 ISO date) as lisguard last heard
    # them: two identifiers before anything is done for a patient (AABB, CAP)
    patient_name: str = ""
    birth_date: str = ""
    # the test the alert is about, as ordered (OBR-4 code and text, or the blood product), and
    # the specimen's collection time (OBR-7); empty for alerts about a drug order or dose
    order_code: str = ""
    order_text: str = ""
    collected: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _rule_audience(cls, data: Any) -> Any:
        # an alert stored before audiences existed belongs to its rule's audience
        if isinstance(data, dict) and "audience" not in data and "rule" in data:
            try:
                return {**data, "audience": RULE_AUDIENCE[RuleId(data["rule"])]}
            except ValueError:
                return data
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def test(self) -> bool:
        """Raised by a test (T) or debugging (D) message: never paged or delivered as real."""
        return self.processing_id != "P"

    @property
    def patient_key(self) -> str:
        return (
            f"{self.patient}^{self.patient_authority}" if self.patient_authority else self.patient
        )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def alert_id(patient_key: str, rule: RuleId, order: str, processing_id: str = "P") -> str:
    """Deterministic id: the same patient, rule and order always give the same id.

    That is what makes "one alert per patient, rule and order" hold across replays, restarts
    and replicas: the store can refuse a second insert of the same id. A test message's alert
    gets an id of its own: sharing the production id would make the store refuse the real
    alert later as a repeat of the test one.
    """
    text = f"{patient_key}\x1f{rule.value}\x1f{order}"
    if processing_id != "P":
        text += f"\x1f{processing_id}"  # production ids stay as they always were
    return hashlib.sha256(text.encode()).hexdigest()[:24]
