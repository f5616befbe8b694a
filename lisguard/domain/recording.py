"""Recording what a message says into the patient's state: doses and orders, drug mentions,
RBC typing, M-protein isotype, order-question answers, immunoglobulin levels and HBV serology.

The engine's first half (lisguard.domain.engine runs these, then the rules). Each function
reads the message through the knowledge base and writes `ctx.after`, noting a StateChange for
the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from lisguard.domain.alerts import EvidenceItem
from lisguard.domain.context import RuleContext
from lisguard.domain.facts import (
    ClinicalMessage,
    Coded,
    LabOrder,
    Medication,
    MedicationAction,
    Observation,
)
from lisguard.domain.knowledge import Drug, KnowledgeBase, TestCategory
from lisguard.domain.lab_values import (
    HBV_MARKERS,
    IMMUNOGLOBULINS,
    immunoglobulin_result,
    serology_result,
)
from lisguard.domain.patient import Exposure, IsotypeStatement, RbcTyping

# Observation types a person writes into: scanned for drug mentions.
NARRATIVE_TYPES = frozenset({"TX", "ST", "FT"})
TYPING = frozenset({TestCategory.RBC_PHENOTYPE, TestCategory.RBC_GENOTYPE})
MPROTEIN = frozenset({TestCategory.IFE, TestCategory.SPEP})
# An "IgG"/"IgM" observation inside these panels is a reagent or a pathogen's antibody, not a
# level (a DAT's anti-IgG reads "0" or "2+").
# (A numeric IgG inside an SPEP/IFE panel is a level: many labs report the quantitative
# immunoglobulins with the electrophoresis.)
NOT_IMMUNOGLOBULIN_PANELS = frozenset(
    {TestCategory.DAT, TestCategory.IAT_SEROLOGY, TestCategory.ID_SEROLOGY}
)
# OBX-11 statuses that withdraw a result
WITHDRAWN = frozenset({"X", "D", "W"})


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change worth an audit event: exposure, typing or isotype recorded, merge."""

    kind: str
    patient: str
    detail: str


def exposure_of(ctx: RuleContext, drug: Drug, kind: str, changes: list[StateChange]) -> Exposure:
    exp = ctx.after.exposures.get(drug.id)
    if exp is None:
        exp = ctx.after.exposures[drug.id] = Exposure(drug=drug.id)
        changes.append(StateChange("exposure", ctx.patient_key, f"{drug.id} ({kind})"))
    return exp


def record_pharmacy(ctx: RuleContext, changes: list[StateChange]) -> None:
    msg = ctx.message
    for med in msg.medications:
        if med.not_given:
            continue  # refused, not administered, cancelled: not an exposure
        drug = drug_of(ctx.kb, med)
        if drug is None:
            continue
        when = med.time or msg.time
        ev = EvidenceItem(
            message=msg.key.control_id, location=med.location, text=_codes_text(med), time=when
        )
        exp = exposure_of(ctx, drug, med.action.value, changes)
        # the same dose resent (a new control id, same time and codes) is not a second dose
        repeat = any(
            e.time == ev.time and e.text == ev.text and e.location == ev.location
            for e in exp.evidence
        )
        exp.add_point(when, med.action.value, ev)
        if med.action is MedicationAction.ADMINISTRATION and not repeat:
            exp.doses += 1
            grams = _grams(med.amount, med.amount_units)
            if grams is not None:
                exp.grams = round((exp.grams or 0.0) + grams, 6)
        # every pharmacy step starts a course: a dispense (RXD) or give (RXG) may come before
        # the first order the feed carries, and must not make the first dose look like a later one
        ctx.new_pharmacy_drugs.append(drug)


_GRAMS = {
    **dict.fromkeys(("G", "GM", "GRAM", "GRAMS"), 1.0),
    **dict.fromkeys(("MG", "MILLIGRAM", "MILLIGRAMS"), 0.001),
    **dict.fromkeys(("UG", "MCG", "\u00b5G", "MICROGRAM", "MICROGRAMS"), 0.000001),
}


def _grams(amount: str, units: str) -> float | None:
    """RXA-6/RXA-7 as grams, None when the unit is not a mass (mL, vials, mg/kg)."""
    factor = _GRAMS.get(units.strip().upper())
    if factor is None:
        return None
    try:
        value = float(amount.strip().replace(",", "."))
    except ValueError:
        return None
    return value * factor if value > 0 else None


def narratives(msg: ClinicalMessage) -> list[tuple[str, str]]:
    """(location, text) of everything a person wrote into the message."""
    texts = [(ft.location, ft.text) for ft in msg.free_text]
    for order in msg.lab_orders:
        if order.clinical_info:
            texts.append(("OBR-13", order.clinical_info))
        texts.extend(("NTE-3", note) for note in order.notes)
        for obs in order.observations:
            if obs.value_type in NARRATIVE_TYPES:
                texts.extend(("OBX-5", v) for v in obs.values)
    return texts


def record_mentions(ctx: RuleContext, changes: list[StateChange]) -> None:
    msg = ctx.message
    texts = narratives(msg)
    # "Pt on daratumumab" says the patient was on it by the time of writing: at the latest the
    # message time, and no later than the sample the same message orders.
    times = [t for t in (msg.time, *(o.time for o in msg.lab_orders)) if t is not None]
    when = min(times) if times else None
    for location, text in texts:
        for mention in ctx.kb.mentions(text, now=msg.time):
            if not mention.drug.enabled:
                continue
            # "discontinued 2019", "last dose 03/2024": the mention is dated by what it says
            at = mention.dated or when
            ev = EvidenceItem(
                message=msg.key.control_id, location=location, text=text[:200], time=at
            )
            exposure_of(ctx, mention.drug, "mention", changes).add_point(at, "mention", ev)


def record_lab_findings(ctx: RuleContext, changes: list[StateChange]) -> None:
    """Test categories per order; RBC typing, K status and M-protein isotype from results;
    order questions answered yes; the one number each order goes by."""
    kb, msg, after = ctx.kb, ctx.message, ctx.after
    control_id = msg.key.control_id
    for order in msg.lab_orders:
        categorize = kb.categorize_product if order.blood_product else kb.categorize
        panel_cats = categorize(order.service) | categorize(order.alt_service)
        cats = set(panel_cats)
        if order.blood_product and (
            TestCategory.BLOOD_PRODUCT_ORDER in cats or TestCategory.NON_RBC_PRODUCT not in cats
        ):
            # OMB/BPS/BTS: a product not known to be platelets, plasma or cryo is taken for red
            # cells (the safe side: a crossmatch is then due)
            cats.add(TestCategory.BLOOD_PRODUCT_ORDER)
        typing: RbcTyping | None = None
        isotype: IsotypeStatement | None = None
        for obs in order.observations:
            obs_cats = kb.categorize(obs.code) | kb.categorize(obs.alt_code)
            if not obs_cats and panel_cats & TYPING:
                # inside a phenotype panel a bare "K" is the K antigen, not potassium, and a
                # value in Kell notation ("KEL*01/KEL*02") is the K result
                named = kb.antigen_named(obs.code.text) or kb.antigen_named(obs.code.code)
                if named or any(kb.kell_notation(v) is not None for v in obs.values):
                    obs_cats = panel_cats & TYPING
            cats |= obs_cats
            if obs.status in WITHDRAWN or not obs.values:
                continue
            when = obs.time or order.time or msg.time
            _record_answer(ctx, order, obs, changes)
            if obs_cats & TYPING:
                kind = "genotype" if TestCategory.RBC_GENOTYPE in obs_cats else "phenotype"
                if typing is None:
                    typing = RbcTyping(kind=kind, time=when, message=control_id)
                elif kind == "genotype":
                    typing.kind = kind
                _read_antigens(kb, obs, obs_cats, typing)
            if isotype is None and (obs_cats | cats) & MPROTEIN:
                isotype = _isotype_in(kb, obs.values, when, control_id)
            if not order.cancelled:
                _record_immunoglobulins(ctx, panel_cats, obs, obs_cats, when, changes)
        if not order.cancelled and cats & HBV_MARKERS:
            _record_pending_hbv(ctx, order, cats, changes)
        if isotype is None and cats & MPROTEIN:
            isotype = _isotype_in(kb, order.notes, order.time or msg.time, control_id)
        if isotype is not None:
            after.add_isotype(isotype)
            changes.append(StateChange("isotype", ctx.patient_key, isotype.isotype))
        if typing is not None:
            after.add_typing(typing)
            if "K" in typing.antigens:
                after.k_positive = typing.antigens["K"]
            antigens = ",".join(
                f"{a}{'+' if v else '-'}" for a, v in sorted(typing.antigens.items())
            )
            changes.append(StateChange("typing", ctx.patient_key, f"{typing.kind} {antigens}"))
        if cats:  # an order the rules read: remembered under one number (placer or filler)
            number = after.order_number(order.placer, order.filler)
            if number and number != order.order_id:
                order = replace(order, order_id=number)
        ctx.orders.append(order)
        ctx.order_categories.append(frozenset(cats))


def _record_immunoglobulins(
    ctx: RuleContext,
    panel_cats: frozenset[TestCategory],
    obs: Observation,
    obs_cats: frozenset[TestCategory],
    when: datetime | None,
    changes: list[StateChange],
) -> None:
    """A quantitative IgG/IgA/IgM, or an HBV marker's result, into the patient's state."""
    control_id = ctx.message.key.control_id
    if not panel_cats & NOT_IMMUNOGLOBULIN_PANELS:  # "IgG" in a DAT panel is its reagent
        for cat, test in IMMUNOGLOBULINS.items():
            if cat in obs_cats:
                found = immunoglobulin_result(cat, obs, when, control_id)
                if found is not None:
                    ctx.after.add_immunoglobulin(found)
                    ctx.new_immunoglobulins.append((len(ctx.orders), found))
                    detail = f"{test} {found.value} {found.units}".strip()
                    changes.append(StateChange("immunoglobulin", ctx.patient_key, detail))
    for marker in sorted(obs_cats & HBV_MARKERS):
        reactive = next((r for r in map(ctx.kb.is_reactive, obs.values) if r is not None), None)
        ctx.after.add_hbv(serology_result(marker, obs, when, control_id, reactive))
        changes.append(StateChange("hbv_serology", ctx.patient_key, f"{marker.value} resulted"))


def _record_pending_hbv(
    ctx: RuleContext, order: LabOrder, cats: set[TestCategory], changes: list[StateChange]
) -> None:
    """An HBV marker ordered and not resulted in this message: the screen is under way."""
    resulted: set[TestCategory] = set()
    for obs in order.observations:
        if obs.values and obs.status not in WITHDRAWN:
            cats_of = ctx.kb.categorize(obs.code) | ctx.kb.categorize(obs.alt_code)
            resulted |= cats_of & HBV_MARKERS
    when = order.time or ctx.message.time
    for marker in sorted(cats & HBV_MARKERS - resulted):
        if any(r.marker == marker.value for r in ctx.after.hbv):
            continue  # on file already: an order adds nothing
        ctx.after.add_hbv(serology_result(marker, None, when, ctx.message.key.control_id, None))
        changes.append(StateChange("hbv_serology", ctx.patient_key, f"{marker.value} ordered"))


def _read_antigens(
    kb: KnowledgeBase,
    obs: Observation,
    cats: frozenset[TestCategory],
    typing: RbcTyping,
) -> None:
    """The antigens one typing OBX states: by its definition's antigen ("K ANTIGEN"), by a bare
    antigen name inside a typing panel ("K"), else K read from Kell notation in the value
    itself ("KEL*01/KEL*02", "KEL:1,2", "K+k+") under a Kell or whole-panel name."""
    definition = kb.test_for(obs.code) or kb.test_for(obs.alt_code)
    antigen = definition.antigen if definition is not None else None
    if not antigen and cats & TYPING:
        antigen = kb.antigen_named(obs.code.text) or kb.antigen_named(obs.code.code)
    if antigen:
        for value in obs.values:
            status = kb.antigen_status(antigen, value)
            if status is not None:
                typing.antigens[antigen] = status
                return
        if antigen != "K":
            return
    for value in obs.values:
        status = kb.kell_notation(value)
        if status is not None:
            typing.antigens["K"] = status
            return


def asked(kb: KnowledgeBase, obs: Observation) -> bool:
    """An order question about a drug answered yes ("Received daratumumab in the last 6
    months?" = Y)."""
    return bool(kb.drugs_asked_about(obs.code, obs.alt_code)) and any(
        kb.answer(v) is True for v in obs.values
    )


def _record_answer(
    ctx: RuleContext, order: LabOrder, obs: Observation, changes: list[StateChange]
) -> None:
    """A yes to an order question about a drug is exposure evidence, dated at the order; a no
    (or "unknown") is not."""
    drugs = ctx.kb.drugs_asked_about(obs.code, obs.alt_code)
    if not drugs:
        return
    answer = next((a for a in map(ctx.kb.answer, obs.values) if a is not None), None)
    if answer is not True:
        return
    when = order.time or ctx.message.time
    question = obs.code.text or obs.alt_code.text or obs.code.code
    ev = EvidenceItem(
        message=ctx.message.key.control_id,
        location="OBX-5",
        text=f"{question} = {obs.values[0]}"[:200],
        time=when,
    )
    for drug in drugs:
        exposure_of(ctx, drug, "question", changes).add_point(when, "question", ev)


def _isotype_in(
    kb: KnowledgeBase, texts: Sequence[str], when: datetime | None, message: str
) -> IsotypeStatement | None:
    for text in texts:
        found = kb.mprotein_isotype(text)
        if found:
            return IsotypeStatement(isotype=found, time=when, message=message)
    return None


def drug_of(kb: KnowledgeBase, med: Medication) -> Drug | None:
    """The drug a pharmacy segment names; its subcutaneous form when RXR-1 says SC (an
    isatuximab order given subcutaneously is Sarclisa SC, not the IV product)."""
    drug = drug_of_codes(kb, med.codes)
    if drug is not None and drug.subcutaneous_form and kb.is_subcutaneous(med.route):
        sc = kb.drugs.get(drug.subcutaneous_form)
        if sc is not None and sc.enabled:
            return sc
    return drug


def drug_of_codes(kb: KnowledgeBase, codes: Iterable[Coded]) -> Drug | None:
    """The first enabled drug the codes of a pharmacy field name."""
    for coded in codes:
        drug = kb.drug_for_code(coded)
        if drug is not None and drug.enabled:
            return drug
    return None


def _codes_text(med: Medication) -> str:
    parts = ("^".join(p for p in (c.code, c.text, c.system) if p) for c in med.codes)
    return "; ".join(p for p in parts if p)[:200]
