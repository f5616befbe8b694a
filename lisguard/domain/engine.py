"""The clinical engine: one message in, the patient's new state and any alerts out.

Pure: the caller loads the states it needs (the message's patient and any merged identifiers),
calls `evaluate`, and persists what comes back. Nothing here reads a clock: every time is the
message's own, so replaying a feed gives the same alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from lisguard.domain.alerts import RULE_AUDIENCE, Alert, EvidenceItem, alert_id
from lisguard.domain.context import Rule, RuleContext
from lisguard.domain.facts import (
    ClinicalMessage,
    Coded,
    LabOrder,
    Medication,
    MedicationAction,
    Observation,
    PatientId,
)
from lisguard.domain.knowledge import Drug, KnowledgeBase, TestCategory
from lisguard.domain.lab_values import (
    HBV_MARKERS,
    IMMUNOGLOBULINS,
    immunoglobulin_result,
    serology_result,
)
from lisguard.domain.patient import Exposure, IsotypeStatement, PatientState, RbcTyping
from lisguard.domain.rules import DEFAULT_RULES

# Observation types a person writes into: scanned for drug mentions.
NARRATIVE_TYPES = frozenset({"TX", "ST", "FT"})
TYPING = frozenset({TestCategory.RBC_PHENOTYPE, TestCategory.RBC_GENOTYPE})
MPROTEIN = frozenset({TestCategory.IFE, TestCategory.SPEP})
# An "IgG"/"IgM" observation inside these panels is a reagent or an isotype, not a level.
NOT_IMMUNOGLOBULIN_PANELS = frozenset(
    {TestCategory.DAT, TestCategory.IAT_SEROLOGY, TestCategory.IFE, TestCategory.SPEP}
    | {TestCategory.ID_SEROLOGY}
)
# OBX-11 statuses that withdraw a result
WITHDRAWN = frozenset({"X", "D", "W"})
# How far a retired identifier's alias chain is followed (A merged into B, B into C, ...).
MAX_ALIAS_HOPS = 8


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change worth an audit event: exposure, typing or isotype recorded, merge."""

    kind: str
    patient: str
    detail: str


@dataclass
class Outcome:
    # states to persist (empty when nothing changed); a merged-away identifier's is its alias
    states: dict[str, PatientState]
    alerts: list[Alert]
    changes: list[StateChange]


def patient_keys(msg: ClinicalMessage) -> list[str]:
    """The states `evaluate` needs first: the message's patient, the identifiers it merges,
    links or unlinks. Then `keys_to_follow` says what those states point to."""
    if msg.patient is None:
        return []
    key = msg.patient.key
    others = (*msg.merged_from, *msg.linked, *msg.unlinked)
    return list(dict.fromkeys([key, *(p.key for p in others if p.key != key)]))


def resolve(key: str, states: Mapping[str, PatientState]) -> str:
    """The record a key lands on: a retired identifier's survivor (following the chain)."""
    seen = {key}
    for _ in range(MAX_ALIAS_HOPS):
        state = states.get(key)
        if state is None or state.alias_of is None or state.alias_of in seen:
            return key
        key = state.alias_of
        seen.add(key)
    return key


def keys_to_follow(
    msg: ClinicalMessage, states: Mapping[str, PatientState]
) -> tuple[list[str], list[str]]:
    """(to lock, to read): states the loaded ones point to and that are not loaded yet - the
    survivor of a retired identifier (written: lock it), and the records linked to the
    patient's (only read). The caller loads them and asks again until both are empty (at most
    MAX_ALIAS_HOPS rounds)."""
    if msg.patient is None:
        return [], []
    first = patient_keys(msg)
    # where the loaded records point and that is not loaded (a key never seen points nowhere)
    lock = [k for k in (resolve(k, states) for k in first) if k not in states and k not in first]
    if lock:
        return list(dict.fromkeys(lock)), []
    main = states.get(resolve(msg.patient.key, states))
    linked = (resolve(k, states) for k in (main.linked if main else ()))
    return [], list(dict.fromkeys(k for k in linked if k not in states))


def touches_state(msg: ClinicalMessage, kb: KnowledgeBase) -> bool:
    """Whether the message says anything the patient's state or a rule reads: a merge, link or
    unlink, a known drug given or ordered, a drug mention in free text, a yes to an order
    question about a drug, or a test of a category the knowledge base knows (a blood product
    order always is one). Most of a feed says none of these (a CBC, a chemistry panel for any
    patient): for those `evaluate` would change nothing and raise nothing, so the state need
    not even be loaded. Exactly the conditions the recording steps and the rules below start
    from."""
    if msg.patient is None:
        return False
    key = msg.patient.key
    if any(other.key != key for other in (*msg.merged_from, *msg.linked, *msg.unlinked)):
        return True
    if any(not med.not_given and _drug_of(kb, med) is not None for med in msg.medications):
        return True
    for order in msg.lab_orders:
        if order.blood_product:
            return True
        if kb.categorize(order.service) or kb.categorize(order.alt_service):
            return True
        for obs in order.observations:
            if kb.categorize(obs.code) or kb.categorize(obs.alt_code) or _asked(kb, obs):
                return True
    return any(m.drug.enabled for _, text in _narratives(msg) for m in kb.mentions(text))


def evaluate(
    msg: ClinicalMessage,
    states: Mapping[str, PatientState],
    kb: KnowledgeBase,
    rules: Sequence[Rule] = DEFAULT_RULES,
) -> Outcome:
    """Apply one message to the patient's state, then run the rules over it."""
    if msg.patient is None or not touches_state(msg, kb):
        return Outcome({}, [], [])
    return _evaluate(msg, states, kb, rules)


def _evaluate(
    msg: ClinicalMessage,
    states: Mapping[str, PatientState],
    kb: KnowledgeBase,
    rules: Sequence[Rule],
) -> Outcome:
    assert msg.patient is not None
    key = resolve(msg.patient.key, states)  # a retired identifier lands on its survivor
    found = states.get(key)
    before = found or PatientState(key=key)
    # a copy through JSON: 5x cheaper than model_copy(deep=True), and states are JSON anyway
    after = PatientState(key=key) if found is None else _copy(found)
    changes: list[StateChange] = []
    others: dict[str, PatientState] = {}  # other records this message changes

    for prior in msg.merged_from:
        _merge(after, prior.key, states, others, changes)
    for linked in msg.linked:
        _link(after, resolve(linked.key, states), states, others, changes, link=True)
    for unlinked in msg.unlinked:
        _link(after, resolve(unlinked.key, states), states, others, changes, link=False)

    ctx = RuleContext(msg, key, before, after, kb)
    _record_pharmacy(ctx, changes)
    _record_mentions(ctx, changes)
    _record_lab_findings(ctx, changes)

    # Rules see the record with what its linked records know (A24: one person, two records).
    view = ctx
    linked_keys = {resolve(k, states) for k in after.linked} - {key}
    linked_states = [states[k] for k in sorted(linked_keys) if k in states]
    if linked_states:
        before_view, after_view = _copy(before), _copy(after)
        for st in linked_states:
            before_view.absorb(st)
            after_view.absorb(st)
        view = replace(ctx, before=before_view, after=after_view)

    patient = PatientId.from_key(key)
    alerts: list[Alert] = []
    for rule in rules:
        for draft in rule(view):
            aid = alert_id(key, draft.rule, draft.order, msg.processing_id)
            if aid in after.alerted:
                continue  # one alert per patient, rule and order
            after.alerted.append(aid)
            alerts.append(
                Alert(
                    id=aid,
                    rule=draft.rule,
                    patient=patient.id,
                    patient_authority=patient.authority,
                    message=msg.key.control_id,
                    order=draft.order,
                    severity=draft.severity,
                    recommendations=tuple(draft.recommendations),
                    text=draft.text,
                    drugs=tuple(draft.drugs),
                    event_time=draft.event_time,
                    location=msg.location,
                    evidence=tuple(draft.evidence),
                    sources=tuple(draft.sources),
                    processing_id=msg.processing_id,
                    audience=draft.audience or RULE_AUDIENCE[draft.rule],
                )
            )
    changed = {k: st for k, st in others.items() if st != states.get(k)}
    if after != before:
        if msg.time is not None:
            after.updated = msg.time
        changed[key] = after
    return Outcome(changed, alerts, changes)


def _merge(
    after: PatientState,
    prior: str,
    states: Mapping[str, PatientState],
    others: dict[str, PatientState],
    changes: list[StateChange],
) -> None:
    """MRG-1 into the message's patient: its state moves to the survivor, and the retired
    identifier stays behind as an alias (`alias_of`), so that messages still using it land on
    the survivor. A record already merged elsewhere keeps pointing where it points."""
    key = after.key
    if prior == key or resolve(prior, states) == key:
        return  # the same merge again (a resend under a new control id)
    old = states.get(prior)
    if old is not None and old.alias_of is not None:
        return  # merged into another record before: a merge is never undone or moved
    if old is not None:
        after.absorb(old)
    elif prior not in after.merged_from:
        after.merged_from.append(prior)
    after.linked = [k for k in after.linked if k != prior]
    others[prior] = PatientState(key=prior, alias_of=key)
    changes.append(StateChange("merge", key, f"{prior} merged into {key}"))


def _link(
    after: PatientState,
    other_key: str,
    states: Mapping[str, PatientState],
    others: dict[str, PatientState],
    changes: list[StateChange],
    *,
    link: bool,
) -> None:
    """A24 links two records (both keep their own state; the rules read both), A37 unlinks
    them. A merged pair is one record: an unlink never undoes a merge."""
    key = after.key
    if other_key == key:
        if not link:
            changes.append(StateChange("unlink", key, f"{key}: merged records stay merged"))
        return
    if other_key not in others:
        found = states.get(other_key)
        others[other_key] = PatientState(key=other_key) if found is None else _copy(found)
    them = others[other_key]
    if link:
        for a, b in ((after, other_key), (them, key)):
            if b not in a.linked:
                a.linked.append(b)
        changes.append(StateChange("link", key, f"{key} linked with {other_key}"))
    else:
        after.linked = [k for k in after.linked if k != other_key]
        them.linked = [k for k in them.linked if k != key]
        changes.append(StateChange("unlink", key, f"{key} unlinked from {other_key}"))


def _exposure(ctx: RuleContext, drug: Drug, kind: str, changes: list[StateChange]) -> Exposure:
    exp = ctx.after.exposures.get(drug.id)
    if exp is None:
        exp = ctx.after.exposures[drug.id] = Exposure(drug=drug.id)
        changes.append(StateChange("exposure", ctx.patient_key, f"{drug.id} ({kind})"))
    return exp


def _record_pharmacy(ctx: RuleContext, changes: list[StateChange]) -> None:
    msg = ctx.message
    for med in msg.medications:
        if med.not_given:
            continue  # refused, not administered, cancelled: not an exposure
        drug = _drug_of(ctx.kb, med)
        if drug is None:
            continue
        when = med.time or msg.time
        ev = EvidenceItem(
            message=msg.key.control_id, location=med.location, text=_codes_text(med), time=when
        )
        exp = _exposure(ctx, drug, med.action.value, changes)
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
                exp.grams = round((exp.grams or 0.0) + grams, 3)
        if med.action in (MedicationAction.ORDER, MedicationAction.ADMINISTRATION):
            ctx.new_pharmacy_drugs.append(drug)


_GRAMS = {"G": 1.0, "GM": 1.0, "GRAM": 1.0, "GRAMS": 1.0, "MG": 0.001, "KG": 1000.0}


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


def _copy(state: PatientState) -> PatientState:
    return PatientState.model_validate_json(state.model_dump_json())


def _narratives(msg: ClinicalMessage) -> list[tuple[str, str]]:
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


def _record_mentions(ctx: RuleContext, changes: list[StateChange]) -> None:
    msg = ctx.message
    texts = _narratives(msg)
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
            _exposure(ctx, mention.drug, "mention", changes).add_point(at, "mention", ev)


def _record_lab_findings(ctx: RuleContext, changes: list[StateChange]) -> None:
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


def _asked(kb: KnowledgeBase, obs: Observation) -> bool:
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
        _exposure(ctx, drug, "question", changes).add_point(when, "question", ev)


def _isotype_in(
    kb: KnowledgeBase, texts: Sequence[str], when: datetime | None, message: str
) -> IsotypeStatement | None:
    for text in texts:
        found = kb.mprotein_isotype(text)
        if found:
            return IsotypeStatement(isotype=found, time=when, message=message)
    return None


def _drug_of(kb: KnowledgeBase, med: Medication) -> Drug | None:
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
