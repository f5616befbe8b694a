"""The rules. Each is a small callable `(RuleContext) -> Iterable[AlertDraft]`; the engine runs them
in order over every message, after the patient's state has taken in what the message said.

Rule ids and recommendation codes are a contract (docs/ALERTS.md); so are the conditions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from lisguard.domain.alerts import Audience, Recommendation, RuleId, Severity
from lisguard.domain.context import AlertDraft, Rule, RuleContext
from lisguard.domain.facts import LabOrder
from lisguard.domain.knowledge import Effect, TestCategory
from lisguard.domain.rule_text import day, evidence_for, on_text, order_evidence
from lisguard.domain.rules_ig import (
    MARKER_NAMES,
    hbv_screen_due,
    hypogammaglobulinemia,
    ig_passive_antibody,
    ivig_prophylaxis,
    positive_dat,
)

R = Recommendation
ANTI_CD38 = "anti_cd38"
ANTI_CD47 = "anti_cd47"


def baseline_workup(ctx: RuleContext) -> Iterable[AlertDraft]:
    """First anti-CD38 order/administration: no pre-treatment RBC phenotype/genotype on file
    (blood bank), or no HBV screen on file before it (clinic, when that is all that is due).
    A later anti-CD38 order or dose for a patient with no HBV serology on file at all asks for
    it once (patients already on treatment with unknown serology [MHRA-HBV 2019])."""
    anti_cd38 = {d.id for d in ctx.kb.drugs.values() if d.drug_class == ANTI_CD38}
    new = [d for d in ctx.new_pharmacy_drugs if d.id in anti_cd38]
    if not new:
        return
    drug = new[0]
    exp = ctx.after.exposures[drug.id]
    first = ctx.before.first_point(anti_cd38) is None
    typing_due = first and not ctx.after.has_pretreatment_typing(
        ctx.drugs_with(Effect.RBC_SEROLOGY)
    )
    missing = hbv_screen_due(ctx, exp.first_point, first)
    if not typing_due and not missing:
        return
    recs: list[Recommendation] = []
    parts = []
    sources = []
    if typing_due:
        recs += [R.BASELINE_TYPE_AND_SCREEN, R.PRETREATMENT_PHENOTYPE]
        parts.append(
            "no pre-treatment RBC phenotype or genotype on file: draw ABO/RhD, antibody screen"
            " and extended phenotype before the first dose (genotype if already dosed)"
        )
        sources += ["DARZALEX", "ANZSBT", "SURVEY"]
    if missing:
        recs.append(R.HBV_SCREEN_BEFORE_FIRST_DOSE)
        names = " and ".join(MARKER_NAMES[m] for m in missing)
        when = "before the first dose" if first else "on file (already on treatment)"
        parts.append(
            f"no {names} {when}: screen for hepatitis B (reactivation has been reported with"
            " daratumumab), drawn before any IVIG, whose passive anti-HBc would confuse it"
        )
        sources += ["DARZALEX", "MHRA-HBV 2019", "ASCO-HBV 2020"]
        # asked once per patient: the engine persists `after`, so the next dose knows
        ctx.after.hbv_prompted = exp.last_point or ctx.message.time or datetime.min
    yield AlertDraft(
        rule=RuleId.BASELINE_WORKUP,
        # once per patient; the HBV prompt of a patient already dosed is its own (once too)
        order="" if first else "HBV",
        severity=Severity.HIGH if typing_due else Severity.MEDIUM,
        recommendations=recs,
        text=f"{drug.name} ordered/given, " + "; ".join(parts) + ".",
        drugs=[drug.id],
        event_time=exp.first_point if first else exp.last_point,
        evidence=list(exp.evidence[-1:]),
        sources=list(dict.fromkeys(sources)),
        audience=Audience.BLOOD_BANK if typing_due else Audience.CLINIC,
    )


BLOOD_BANK = frozenset({TestCategory.IAT_SEROLOGY, TestCategory.BLOOD_PRODUCT_ORDER})


def bb_serology(ctx: RuleContext) -> Iterable[AlertDraft]:
    """IAT-phase blood bank test, or a red-cell product order (it implies a crossmatch), while
    a red-cell-affecting exposure is active."""
    rbc_drugs = ctx.drugs_with(Effect.RBC_SEROLOGY)
    for order, cats in ctx.lab_orders():
        if not cats & BLOOD_BANK:
            continue  # ABO/RhD alone has no AHG phase: never alerts
        when = ctx.order_time(order)
        active = ctx.active(when, Effect.RBC_SEROLOGY)
        if not active:
            continue
        recs: list[Recommendation] = []
        advice = []
        if any(a.drug.drug_class != ANTI_CD47 for a in active):
            # DTT denatures Kell antigens, hence K-negative units [BRANCH] [BBGUY]
            recs.append(R.DTT_TREATED_REAGENT_CELLS)
            advice.append("use DTT-treated reagent cells")
            if ctx.after.k_positive is not True:
                recs.append(R.KELL_NEGATIVE_UNITS)
                advice.append("give K-negative units")
        if any(a.drug.drug_class == ANTI_CD47 for a in active):
            recs.append(R.ANTI_CD47_WORKUP)
            advice.append(
                "anti-CD47: DTT will not help, use a non-IgG4 anti-IgG and alloadsorption"
            )
        if ctx.after.has_pretreatment_typing(rbc_drugs):
            recs.append(R.PHENOTYPE_MATCHED_UNITS)
            advice.append("pre-treatment phenotype on file: antigen-match units")
        what = (
            "red cells ordered: the crossmatch will be panreactive"
            if TestCategory.IAT_SEROLOGY not in cats
            else "expect panreactive IAT"
        )
        sources = ["DARZALEX", "ANZSBT", "BBGUY", "SURVEY"]
        if R.ANTI_CD47_WORKUP in recs:
            sources.append("VELLIQUETTE 2019")
        yield AlertDraft(
            rule=RuleId.BB_SEROLOGY,
            order=order.order_id,
            severity=Severity.HIGH,
            recommendations=recs,
            text=f"{on_text(active)}: {what}; {'; '.join(advice)}.",
            drugs=[a.drug.id for a in active],
            event_time=when,
            evidence=evidence_for(ctx, order, active),
            sources=sources,
        )


def spep_ife(ctx: RuleContext) -> Iterable[AlertDraft]:
    """SPEP/IFE while an SPEP-affecting (IgG-kappa therapeutic antibody) exposure is active."""
    for order, cats in ctx.lab_orders():
        if not cats & {TestCategory.SPEP, TestCategory.IFE}:
            continue
        when = ctx.order_time(order)
        active = ctx.active(when, Effect.SPEP_IFE)
        if not active:
            continue
        recs = []
        if any(a.drug.drug_specific_ife for a in active):
            recs.append(R.DRUG_SPECIFIC_IFE_REFLEX)
        recs.append(R.MASS_SPEC_MPROTEIN)
        own = ctx.after.own_isotype(ctx.drugs_with(Effect.SPEP_IFE))
        igg_kappa = own is not None and own.lower() == "igg kappa"
        if igg_kappa:
            tail = "patient's own M-protein is IgG kappa: a small IgG-kappa band may be the drug"
        else:
            tail = "a small IgG-kappa band in the gamma region may be the drug, not disease"
        yield AlertDraft(
            rule=RuleId.SPEP_IFE,
            order=order.order_id,
            severity=Severity.HIGH if igg_kappa else Severity.MEDIUM,
            recommendations=recs,
            text=f"{on_text(active)}: {tail}.",
            drugs=[a.drug.id for a in active],
            event_time=when,
            evidence=evidence_for(ctx, order, active),
            sources=["DARZALEX", "VANDEDONK 2018", "IMWG-MS 2021"],
        )


def flow_mrd(ctx: RuleContext) -> Iterable[AlertDraft]:
    """Flow-cytometry MRD while an anti-CD38 exposure is active: plasma-cell (myeloma) panels
    get CD38-independent gating; lymphoblastic leukaemia panels, where CD38 is a blast marker,
    get CD38_EPITOPE_MASKED [VAKRMANOVA 2022], never plasma-cell gating advice. Other MRD
    panels (CLL, AML, ...) are not read as either."""
    for order, cats in ctx.lab_orders():
        plasma_cell = TestCategory.FLOW_MRD in cats
        if not plasma_cell and TestCategory.ALL_FLOW_MRD not in cats:
            continue
        when = ctx.order_time(order)
        active = ctx.active(when, Effect.CD38_FLOW)
        if not active:
            continue
        if plasma_cell:
            rec, sources = R.CD38_INDEPENDENT_GATING, ["NG 2021", "EUROFLOW 2016"]
            tail = "CD38 on plasma cells is masked; gate without relying on CD38"
        else:
            rec, sources = R.CD38_EPITOPE_MASKED, ["VAKRMANOVA 2022"]
            tail = (
                "CD38 on blasts may read falsely negative; use a CD38 antibody to an epitope the"
                " drug does not block"
            )
        yield AlertDraft(
            rule=RuleId.FLOW_MRD,
            order=order.order_id,
            severity=Severity.MEDIUM,
            recommendations=[rec],
            text=f"{on_text(active)}: {tail}.",
            drugs=[a.drug.id for a in active],
            event_time=when,
            evidence=evidence_for(ctx, order, active),
            sources=sources,
        )


def unexplained_panreactivity(ctx: RuleContext) -> Iterable[AlertDraft]:
    """A panreactive antibody screen/ID for a patient with no active red-cell-affecting exposure."""
    for order, cats in ctx.lab_orders():
        if TestCategory.IAT_SEROLOGY not in cats or not order.observations:
            continue
        if not _panreactive(ctx, order):
            continue
        when = ctx.order_time(order)
        if ctx.active(when, Effect.RBC_SEROLOGY):
            continue  # explained: bb-serology covers it
        past = _past_exposure(ctx, when)
        yield AlertDraft(
            rule=RuleId.UNEXPLAINED_PANREACTIVITY,
            order=order.order_id,
            severity=Severity.HIGH,
            recommendations=[R.CHECK_ANTI_CD38_HISTORY],
            text="Panreactive antibody screen/ID with no known anti-CD38 therapy"
            + (f" ({past})" if past else "")
            + ": ask pharmacy/clinic about anti-CD38 or anti-CD47 therapy before a full workup.",
            event_time=when,
            evidence=[order_evidence(ctx, order)],
            sources=["SURVEY", "DARZALEX"],
        )


DEFAULT_RULES: Sequence[Rule] = (
    baseline_workup,
    bb_serology,
    spep_ife,
    flow_mrd,
    unexplained_panreactivity,
    ig_passive_antibody,
    positive_dat,
    ivig_prophylaxis,
    hypogammaglobulinemia,
)


def _panreactive(ctx: RuleContext, order: LabOrder) -> bool:
    kb = ctx.kb
    if any(kb.says_panreactive(n) for n in order.notes):
        return True
    cells: list[bool | None] = []
    for obs in order.observations:
        if any(kb.says_panreactive(v) for v in obs.values):
            return True
        if kb.is_screening_cell(obs.code) and obs.values:
            readings = (kb.is_reactive(v) for v in obs.values)
            cells.append(next((r for r in readings if r is not None), None))
    return len(cells) >= 2 and all(c is True for c in cells)


def _past_exposure(ctx: RuleContext, when: datetime | None) -> str:
    rbc = ctx.drugs_with(Effect.RBC_SEROLOGY)
    known = [e for d, e in ctx.after.exposures.items() if d in rbc and e.last_point]
    if not known:
        return ""
    last = max(known, key=lambda e: e.last_point or datetime.min)
    return f"{ctx.kb.drugs[last.drug].name} last seen {day(last.last_point)}, outside the window"
