"""The clinical engine: one message in, the patient's new state and any alerts out.

Pure: the caller loads the states it needs (the message's patient and any merged identifiers),
calls `evaluate`, and persists what comes back. Nothing here reads a clock: every time is the
message's own, so replaying a feed gives the same alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lisguard.domain.alerts import RULE_AUDIENCE, Alert, alert_id
from lisguard.domain.context import Rule, RuleContext
from lisguard.domain.facts import ClinicalMessage, LabOrder, PatientId
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.patient import PatientState
from lisguard.domain.recording import (
    NARRATIVE_TYPES,
    StateChange,
    asked,
    drug_of,
    drug_of_codes,
    narratives,
    record_lab_findings,
    record_mentions,
    record_pharmacy,
)
from lisguard.domain.rules import DEFAULT_RULES

__all__ = [
    "NARRATIVE_TYPES",
    "Outcome",
    "StateChange",
    "drug_of_codes",
    "evaluate",
    "keys_to_follow",
    "patient_keys",
    "touches_state",
]

# How far a retired identifier's alias chain is followed (A merged into B, B into C, ...).
MAX_ALIAS_HOPS = 8


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
    if msg.demographics_update and (msg.patient_name or msg.birth_date):
        return True  # A08/A31: a known patient's name or date of birth may change
    if any(not med.not_given and drug_of(kb, med) is not None for med in msg.medications):
        return True
    for order in msg.lab_orders:
        if order.blood_product:
            return True
        if kb.categorize(order.service) or kb.categorize(order.alt_service):
            return True
        for obs in order.observations:
            if kb.categorize(obs.code) or kb.categorize(obs.alt_code) or asked(kb, obs):
                return True
    return any(m.drug.enabled for _, text in narratives(msg) for m in kb.mentions(text))


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
    record_pharmacy(ctx, changes)
    record_mentions(ctx, changes)
    record_lab_findings(ctx, changes)

    # a message still using a retired identifier names the person as that record did (often
    # a temporary "DOE, JANE"): it never renames the survivor
    if key == msg.patient.key:
        _record_demographics(msg, found is not None or after != before, after, changes)

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
    orders = {o.order_id: o for o in ctx.orders}
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
                    patient_name=after.name,
                    birth_date=after.birth_date,
                    **_ordered_test(orders.get(draft.order)),
                )
            )
    changed = {k: st for k, st in others.items() if st != states.get(k)}
    if after != before:
        if msg.time is not None:
            after.updated = msg.time
        changed[key] = after
    return Outcome(changed, alerts, changes)


def _ordered_test(order: LabOrder | None) -> dict[str, Any]:
    """What the alert's order is: the test as ordered (OBR-4 or the blood product) and when
    the specimen was collected."""
    if order is None:
        return {}
    return {
        "order_code": order.service.code or order.alt_service.code,
        "order_text": order.service.text or order.alt_service.text,
        "collected": order.collected,
    }


def _record_demographics(
    msg: ClinicalMessage, known: bool, after: PatientState, changes: list[StateChange]
) -> None:
    """Name and date of birth from the message's PID, for a patient lisguard keeps (an A08 for
    anyone else creates no record). An older message never overwrites a newer one's. The audit
    detail names no value: it is PHI."""
    if not known or not (msg.patient_name or msg.birth_date):
        return
    if after.demographics_time and msg.time and msg.time < after.demographics_time:
        return
    new = (msg.patient_name or after.name, msg.birth_date or after.birth_date)
    if new == (after.name, after.birth_date):
        return  # unchanged: nothing to write (most messages repeat the same PID)
    fields = (("name", after.name, new[0]), ("date of birth", after.birth_date, new[1]))
    what = " and ".join(label for label, old, value in fields if old != value)
    after.name, after.birth_date = new
    after.demographics_time = msg.time or after.demographics_time
    changes.append(StateChange("demographics", after.key, f"{what} recorded"))


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


def _copy(state: PatientState) -> PatientState:
    return PatientState.model_validate_json(state.model_dump_json())
