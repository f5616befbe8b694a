"""The printable special-requirements slip of one patient (GET /api/patients/{key}/slip): the
two identifiers, the interfering therapies on file with last dose and window end, and what the
blood bank (and the protein and flow labs) must do, printed for the chart or the issue desk.

Every instruction is the knowledge base's: a recommendation's text (RECOMMENDATION_TEXT, the
same sentence the alerts carry) chosen the way the rules choose it (lisguard.domain.rules
bb_serology, spep_ife, flow_mrd, ig-passive-antibody), or a fact of DOMAIN.md with its source
key. A therapy counts while the print time is inside its window (the summary's window end: the
last exposure point plus the drug's window; an immunoglobulin product's passive window from its
last dose), on the feeds' wall clock, as the rules judge.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lisguard.alerting.summary import PatientSummary
from lisguard.domain.alerts import RECOMMENDATION_TEXT, Recommendation
from lisguard.domain.kb_models import DrugClass, Effect
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.web.views import identifiers

R = Recommendation
VERIFY = "Verify two identifiers before issue"
CLASS_TITLES = {
    DrugClass.ANTI_CD38: "anti-CD38",
    DrugClass.ANTI_CD47: "anti-CD47",
    DrugClass.ANTI_SLAMF7: "anti-SLAMF7",
    DrugClass.IVIG: "IVIG",
    DrugClass.SCIG: "SCIG",
    DrugClass.RHIG: "RhIG",
}
# DOMAIN.md "Blood bank (serology)": facts the issue desk needs that no recommendation states
ABO_RHD_UNAFFECTED = "ABO and RhD typing are not affected (no AHG phase). [DARZALEX] [BBGUY]"
EMERGENCY = "Emergency: ABO/RhD-compatible non-crossmatched units per local policy. [DARZALEX-AU]"
KNOWN_K_POSITIVE = (
    "Known K+ (KEL1) on file: K-negative selection does not apply (K-negative units unless"
    " known K+). [BBGUY]"
)
NO_BASELINE = "Baseline phenotype not on file."


@dataclass(slots=True)
class Section:
    """One block of the slip: who acts, and the instructions (a code, or None for a fact)."""

    id: str
    title: str
    items: list[dict[str, str | None]] = field(default_factory=list)

    def add(self, code: Recommendation | None, text: str = "") -> None:
        if code is not None:
            text = text or RECOMMENDATION_TEXT[code]
        self.items.append({"code": code.value if code is not None else None, "text": text})

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "items": self.items}


def lisguard_version() -> str:
    try:
        return importlib.metadata.version("lisguard")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return "unknown"


def wall_clock(value: datetime) -> datetime:
    """A time as the feeds' naive wall-clock times are kept (lisguard.hl7v2.datatypes)."""
    return value.astimezone().replace(tzinfo=None) if value.tzinfo is not None else value


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def build_slip(
    summary: PatientSummary, kb: KnowledgeBase, *, now: datetime, printed_by: str, kb_version: str
) -> dict[str, Any]:
    """The slip's content as JSON; `now` is the print time (aware)."""
    clock = wall_clock(now)
    therapies: list[dict[str, Any]] = []
    active: list[tuple[DrugClass, set[Effect], bool]] = []  # class, effects, drug-specific IFE
    for line in summary.exposures:
        drug = kb.drugs.get(line.drug)
        if drug is None or not drug.effects:
            continue  # no test interference (the bispecifics): not the bench's concern
        in_window = bool(
            drug.enabled and line.window_end is not None and clock <= wall_clock(line.window_end)
        )
        if in_window:
            active.append((drug.drug_class, set(drug.effects), drug.drug_specific_ife))
        exposure = line.exposure
        therapies.append(
            {
                "drug": line.drug,
                "name": line.name,
                "class_title": CLASS_TITLES.get(drug.drug_class, drug.drug_class.value),
                "last_dose": _time(exposure.last_dose),
                "last_point": _time(exposure.last_point),
                "planned_start": _time(exposure.planned_start),
                "kinds": list(exposure.kinds),
                "window_end": _time(line.window_end),
                "window_months": kb.window_months(drug),
                "in_window": in_window,
                "enabled": drug.enabled,
            }
        )
    products: list[dict[str, Any]] = []
    passive = False
    for product in summary.products:
        drug = kb.drugs.get(product.drug)
        enabled = drug is not None and drug.enabled
        in_window = bool(
            enabled and product.window_end is not None and clock <= wall_clock(product.window_end)
        )
        passive = passive or in_window
        products.append(
            {
                "drug": product.drug,
                "name": product.name,
                "class_title": CLASS_TITLES.get(DrugClass(product.drug_class), product.drug_class),
                "last_dose": _time(product.exposure.last_dose),
                "doses": product.exposure.doses,
                "window_end": _time(product.window_end),
                "in_window": in_window,
                "enabled": enabled,
            }
        )
    return {
        "patient_key": summary.key,
        "requested_key": summary.requested or None,
        "identifiers": identifiers(summary),
        "therapies": therapies,
        "immunoglobulin_products": products,
        "k_status": summary.k_status,
        "pretreatment_typing": summary.pretreatment_typing,
        "own_isotype": summary.own_isotype,
        "requirements": [s.view() for s in _requirements(summary, active, passive) if s.items],
        "any_in_window": bool(active) or passive,
        "verify": VERIFY,
        "printed_at": now.isoformat(),
        "printed_by": printed_by,
        "version": {
            "lisguard": lisguard_version(),
            "knowledge_base": kb_version,
            "default_window_months": kb.default_window_months,
            "passive_window_months": kb.immunoglobulin.passive_window_months,
        },
    }


def _requirements(
    summary: PatientSummary,
    active: list[tuple[DrugClass, set[Effect], bool]],
    passive: bool,
) -> list[Section]:
    """The instructions for the therapies in their window, in the rules' words and choice."""
    rbc = [(c, ife) for c, effects, ife in active if Effect.RBC_SEROLOGY in effects]
    anti_cd38_like = any(c != DrugClass.ANTI_CD47 for c, _ in rbc)
    anti_cd47 = any(c == DrugClass.ANTI_CD47 for c, _ in rbc)
    serology = Section("serology", "Antibody screen / ID, AHG crossmatch, DAT")
    units = Section("units", "Red cell units")
    if anti_cd38_like:
        serology.add(R.DTT_TREATED_REAGENT_CELLS)
        if summary.k_status == "positive":
            units.add(None, KNOWN_K_POSITIVE)
        else:
            units.add(R.KELL_NEGATIVE_UNITS)
    if anti_cd47:
        serology.add(R.ANTI_CD47_WORKUP)
    if rbc or passive:
        serology.add(R.POSITIVE_DAT_MAY_BE_THERAPY)
    if rbc:
        if summary.pretreatment_typing:
            units.add(R.PHENOTYPE_MATCHED_UNITS)
        else:
            # what to do about it: genotype once dosed (PRETREATMENT_PHENOTYPE's own words)
            units.add(None, f"{NO_BASELINE} {RECOMMENDATION_TEXT[R.PRETREATMENT_PHENOTYPE]}")
        units.add(None, ABO_RHD_UNAFFECTED)
        units.add(None, EMERGENCY)
    protein = Section("spep_ife", "SPEP / IFE (protein lab)")
    spep = [ife for _, effects, ife in active if Effect.SPEP_IFE in effects]
    if spep:
        if any(spep):
            protein.add(R.DRUG_SPECIFIC_IFE_REFLEX)
        protein.add(R.MASS_SPEC_MPROTEIN)
    flow = Section("flow", "Flow MRD (flow lab)")
    if any(Effect.CD38_FLOW in effects for _, effects, _ in active):
        flow.add(R.CD38_INDEPENDENT_GATING)
    ig = Section("immunoglobulin", "Immunoglobulin products: passive antibody window")
    if passive:
        ig.add(R.PASSIVE_ANTIBODY_FROM_IG)
    return [serology, units, protein, flow, ig]
