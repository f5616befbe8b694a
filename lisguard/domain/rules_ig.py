"""The immunoglobulin-therapy rules: passive antibodies from IVIG/SCIG/RhIG, a positive DAT on
therapy, primary IVIG prophylaxis with a bispecific, low immunoglobulins, and the HBV screen
before the first anti-CD38 dose (part of baseline-workup).

Sources (DOMAIN.md "Immunoglobulin therapy and infection risk"): [IG-PI] [KARNA 1994]
[HANSON 2020] [BRIGHT 2015] [LICHTIGER 1994] for passive antibodies; seeds 000-002 for
prophylaxis and IgG; [DARZALEX] [MHRA-HBV 2019] [ASCO-HBV 2020] for HBV. Every switch, window
and threshold is a site setting (kb_models.ImmunoglobulinRules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from lisguard.domain.alerts import Audience, Recommendation, RuleId, Severity
from lisguard.domain.context import (
    BISPECIFIC_CLASSES,
    IMMUNOGLOBULIN_CLASSES,
    POOLED_IG_CLASSES,
    ActiveExposure,
    AlertDraft,
    RuleContext,
    add_months,
)
from lisguard.domain.facts import LabOrder
from lisguard.domain.knowledge import DrugClass, Effect, TestCategory
from lisguard.domain.patient import ImmunoglobulinResult
from lisguard.domain.rule_text import day, evidence_for, on_text

R = Recommendation
T = TestCategory
# Tests whose passive antibodies are red-cell antibodies (anti-A, anti-B, anti-D): the blood bank.
PASSIVE_BLOOD_BANK = frozenset({T.IAT_SEROLOGY, T.DAT, T.BLOOD_PRODUCT_ORDER})
# Infectious-disease antibody tests: serology. HBsAg is an antigen test: no passive effect.
PASSIVE_SEROLOGY = frozenset({T.ID_SEROLOGY, T.ANTI_HBC, T.ANTI_HBS})
# Passive antibodies to infectious agents are dose-dependent, most often above 100 g cumulative
# [HANSON 2020].
HIGH_CUMULATIVE_GRAMS = 100.0
_CONTROL = re.compile(r"\bCONTROL\b|CHECK\s*CELL", re.IGNORECASE)


def ig_passive_antibody(ctx: RuleContext) -> Iterable[AlertDraft]:
    """An IAT test, a DAT, a red-cell order or an infectious-disease antibody test, ordered or
    resulted within the passive window after an immunoglobulin product was given."""
    if not ctx.kb.immunoglobulin.on("passive_antibody"):
        return
    for order, cats in ctx.lab_orders():
        blood_bank = bool(cats & PASSIVE_BLOOD_BANK)
        if not blood_bank and not cats & PASSIVE_SEROLOGY:
            continue
        when = ctx.order_time(order)
        # RhIG carries anti-D only: it matters to red-cell tests, not to infectious serology
        sources = ctx.passive_sources(
            when, IMMUNOGLOBULIN_CLASSES if blood_bank else POOLED_IG_CLASSES
        )
        if not sources:
            continue
        given = _given(sources)
        if blood_bank:
            pooled = any(s.drug.drug_class in POOLED_IG_CLASSES for s in sources)
            antibodies = "anti-A, anti-B and anti-D" if pooled else "anti-D"
            text = (
                f"{given}: passive {antibodies} from the product may give a positive antibody"
                " screen or DAT, or an incompatible crossmatch; read a new antibody with the"
                " date the product was given before calling it the patient's own."
            )
            audience, sources_cited = Audience.BLOOD_BANK, ["IG-PI", "CLINCHEM 2023"]
            if not pooled:
                sources_cited = ["RHIG-PI"]
        else:
            antibodies = _passive_names(ctx, order)
            text = (
                f"{given}: {antibodies} in this test may be passive, from the product; a reactive"
                " result does not prove infection or immunity (test a pre-infusion sample, or"
                " repeat after the window)."
            )
            grams = sum(s.grams or 0.0 for s in sources)
            if grams > HIGH_CUMULATIVE_GRAMS:
                text += f" {grams:g} g given in all: passive antibodies are more likely."
            audience, sources_cited = Audience.SEROLOGY, ["IG-PI", "KARNA 1994", "HANSON 2020"]
        yield AlertDraft(
            rule=RuleId.IG_PASSIVE_ANTIBODY,
            order=order.order_id,
            severity=Severity.MEDIUM,
            recommendations=[R.PASSIVE_ANTIBODY_FROM_IG],
            text=text,
            drugs=[s.drug.id for s in sources],
            event_time=when,
            evidence=evidence_for(ctx, order, sources),
            sources=sources_cited,
            audience=audience,
        )


def positive_dat(ctx: RuleContext) -> Iterable[AlertDraft]:
    """A positive DAT while an anti-CD38 (or anti-CD47) exposure is active, or within the
    passive window of an immunoglobulin product. The DAT alone never raises bb-serology."""
    if not ctx.kb.immunoglobulin.on("positive_dat"):
        return
    for order, cats in ctx.lab_orders():
        if T.DAT not in cats or not _dat_positive(ctx, order):
            continue
        when = ctx.order_time(order)
        drugs = ctx.active(when, Effect.RBC_SEROLOGY)
        sources = ctx.passive_sources(when)
        if not drugs and not sources:
            continue
        causes = []
        if drugs:
            causes.append(f"{on_text(drugs)}: the drug coats the red cells")
        if sources:
            causes.append(f"{_given(sources)}: passive antibodies may coat the red cells")
        yield AlertDraft(
            rule=RuleId.POSITIVE_DAT,
            order=order.order_id,
            severity=Severity.MEDIUM,
            recommendations=[R.POSITIVE_DAT_MAY_BE_THERAPY],
            text="Positive DAT. " + "; ".join(causes) + "; do not call it autoimmune hemolysis"
            " or a transfusion reaction on the DAT alone.",
            drugs=[a.drug.id for a in (*drugs, *sources)],
            event_time=when,
            evidence=evidence_for(ctx, order, [*drugs, *sources]),
            sources=(["DARZALEX"] if drugs else []) + (["IG-PI"] if sources else []),
        )


def ivig_prophylaxis(ctx: RuleContext) -> Iterable[AlertDraft]:
    """The first order or dose of a BCMA/GPRC5D bispecific of a course, with no IVIG/SCIG
    given or ordered in the prophylaxis window before it: once per patient per course (a new
    course is a bispecific after its window has run out)."""
    rules = ctx.kb.immunoglobulin
    if not rules.on("prophylaxis"):
        return
    bispecifics = ctx.kb.drugs_of_class(*BISPECIFIC_CLASSES)
    new = [d for d in ctx.new_pharmacy_drugs if d.id in bispecifics]
    if not new:
        return
    drug = new[0]
    exp = ctx.after.exposures[drug.id]
    when = exp.evidence[-1].time if exp.evidence else ctx.message.time
    for drug_id, prior in ctx.before.exposures.items():
        if drug_id not in bispecifics:
            continue
        if prior.last_point is None or when is None:
            return  # on a bispecific already (undated): not the first of a course
        other = ctx.kb.drugs.get(drug_id)
        window = ctx.kb.window_months(other) if other is not None else 6
        if add_months(prior.last_point, window) >= when:
            return  # the same course
    if _ig_started(ctx, when, rules.prophylaxis_window_days):
        return
    yield AlertDraft(
        rule=RuleId.IVIG_PROPHYLAXIS,
        order=f"course {day(when)}",  # once per course
        severity=Severity.MEDIUM,
        recommendations=[R.PRIMARY_IVIG_PROPHYLAXIS],
        text=(
            f"{drug.name} started {day(when)} with no IVIG/SCIG given in the"
            f" {rules.prophylaxis_window_days} days before: primary IVIG prophylaxis from the"
            " start of bispecific therapy, whatever the IgG, nearly tripled median survival in"
            " one series; do not wait for low IgG or an infection."
        ),
        drugs=[drug.id],
        event_time=when,
        evidence=list(exp.evidence[-1:]),
        sources=["SEED-001", "SEED-002"],
        audience=Audience.CLINIC,
    )


def hypogammaglobulinemia(ctx: RuleContext) -> Iterable[AlertDraft]:
    """An IgG below the threshold, or IgA and IgM both below their reference ranges, while an
    anti-CD38 or bispecific exposure is active."""
    rules = ctx.kb.immunoglobulin
    if not rules.on("low_immunoglobulins"):
        return
    by_order: dict[int, list[ImmunoglobulinResult]] = {}
    for index, result in ctx.new_immunoglobulins:
        by_order.setdefault(index, []).append(result)
    treating = ctx.kb.drugs_of_class(DrugClass.ANTI_CD38, *BISPECIFIC_CLASSES)
    threshold = rules.igg_threshold_mg_dl
    for index, results in sorted(by_order.items()):
        order = ctx.orders[index]
        if order.cancelled:
            continue
        when = next((r.time for r in results if r.time), None) or ctx.order_time(order)
        active = ctx.active_of(when, treating)
        if not active:
            continue
        findings = [
            _low_igg(r, threshold)
            for r in results
            if r.test == "igg" and r.mg_dl is not None and r.mg_dl < threshold
        ]
        if any(r.test in ("iga", "igm") for r in results) and _iga_igm_low(ctx, rules.pair_days):
            findings.append("IgA and IgM both below their reference ranges")
        if not findings:
            continue
        recs = [R.IVIG_REPLACEMENT_REVIEW]
        overstated = _igg_overstated(ctx, when)
        if overstated:
            recs.append(R.IGG_INCLUDES_PARAPROTEIN)
        text = f"{'; '.join(findings)}. {on_text(active)}: review immunoglobulin replacement."
        if overstated:
            text += f" Measured IgG includes {overstated}: the functional IgG is lower."
        given = ctx.passive_sources(when, POOLED_IG_CLASSES)
        if given:
            text += f" {_given(given)}: the level includes the product."
        yield AlertDraft(
            rule=RuleId.HYPOGAMMAGLOBULINEMIA,
            order=order.order_id,
            severity=Severity.MEDIUM,
            recommendations=recs,
            text=text,
            drugs=[a.drug.id for a in active],
            event_time=when,
            evidence=evidence_for(ctx, order, active),
            sources=["SEED-000", "SEED-001", "SEED-002"],
            audience=Audience.CLINIC,
        )


def hbv_screen_due(ctx: RuleContext, first_dose: datetime | None, first: bool) -> list[str]:
    """The HBV markers (site setting) missing when an anti-CD38 is ordered or given: before the
    first dose, or, for a patient already dosed, on file at all; [] when none is missing or the
    prompt was given already."""
    rules = ctx.kb.immunoglobulin
    if not rules.on("hbv_screen") or ctx.before.hbv_prompted is not None:
        return []
    on_file = ctx.after.hbv_on_file(list(rules.hbv_markers), first_dose if first else None)
    return [m for m in rules.hbv_markers if m not in on_file]


MARKER_NAMES = {"hbsag": "HBsAg", "anti_hbc": "anti-HBc", "anti_hbs": "anti-HBs"}


def _given(sources: list[ActiveExposure]) -> str:
    parts = []
    for s in sources:
        amount = f"{s.doses} dose{'s' if s.doses != 1 else ''}"
        if s.grams:
            # RhIG is dosed in micrograms (300 ug), IVIG in grams
            amount += f", {s.grams:g} g" if s.grams >= 0.1 else f", {s.grams * 1e6:g} ug"
        parts.append(
            f"{s.drug.name} last given {day(s.last_dose)} ({amount}; window to {day(s.window_end)})"
        )
    return "; ".join(parts)


def _low_igg(result: ImmunoglobulinResult, threshold: float) -> str:
    limit = f"below {threshold:g} mg/dL"
    if result.mg_dl == result.value and result.units.upper().replace(" ", "") == "MG/DL":
        return f"IgG {result.value:g} mg/dL ({limit})"
    return f"IgG {result.value:g} {result.units} (= {result.mg_dl:g} mg/dL, {limit})"


def _passive_names(ctx: RuleContext, order: LabOrder) -> str:
    kb = ctx.kb
    names: list[str] = []
    codes = [order.service, order.alt_service]
    for obs in order.observations:
        codes.extend((obs.code, obs.alt_code))
    for coded in codes:
        definition = kb.test_for(coded)
        name = definition.passive_antibody if definition is not None else None
        if name and name not in names:
            names.append(name)
    return ", ".join(names) if names else "antibodies"


def _dat_positive(ctx: RuleContext, order: LabOrder) -> bool:
    kb = ctx.kb
    panel = kb.categorize(order.service) | kb.categorize(order.alt_service)
    for obs in order.observations:
        cats = kb.categorize(obs.code) | kb.categorize(obs.alt_code)
        name = obs.code.text or obs.alt_code.text
        if T.DAT not in cats and (T.DAT not in panel or cats or _CONTROL.search(name)):
            continue
        if any(kb.is_reactive(v) is True for v in obs.values):
            return True
    return False


def _ig_started(ctx: RuleContext, when: datetime | None, days: int) -> bool:
    """IVIG/SCIG given or ordered in the `days` before `when` (or after it: already planned)."""
    since = when - timedelta(days=days) if when is not None else None
    for drug_id, exp in ctx.after.exposures.items():
        drug = ctx.kb.drugs.get(drug_id)
        if drug is None or not drug.enabled or drug.drug_class not in POOLED_IG_CLASSES:
            continue
        for point in (exp.last_dose, exp.planned_start):
            if point is not None and (since is None or point >= since):
                return True
    return False


def _iga_igm_low(ctx: RuleContext, pair_days: int) -> bool:
    iga = ctx.after.immunoglobulins.get("iga")
    igm = ctx.after.immunoglobulins.get("igm")
    if iga is None or igm is None or not (iga.below_range and igm.below_range):
        return False
    if iga.time is None or igm.time is None:
        return True
    return abs(iga.time - igm.time) <= timedelta(days=pair_days)


def _igg_overstated(ctx: RuleContext, when: datetime | None) -> str:
    """What besides the patient's normal IgG the measured IgG counts: an IgG M-protein, an
    active IgG therapeutic antibody (seed 001); "" when neither."""
    reasons = []
    own = ctx.after.own_isotype(ctx.drugs_with(Effect.SPEP_IFE))
    if own is not None and own.upper().startswith("IGG"):
        reasons.append(f"the patient's {own} M-protein")
    igg_drugs = {
        d.id for d in ctx.kb.drugs.values() if d.isotype and d.isotype.upper().startswith("IGG")
    }
    active = ctx.active_of(when, igg_drugs)
    if active:
        names = ", ".join(a.drug.name for a in active)
        reasons.append(f"the therapeutic IgG antibody ({names})")
    return " and ".join(reasons)
