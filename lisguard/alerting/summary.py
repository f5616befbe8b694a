"""What the technologist sees about one patient: exposures (drug, last dose, window end),
immunoglobulin products given (IVIG/SCIG/RhIG: doses, grams, passive window end), HBV serology
and the latest IgG/IgA/IgM on file, RBC typing with K status, the M-protein isotype, snoozes and
the alert history.

Judged the way the rules judge (lisguard.domain): the window end is the last exposure point plus
the drug's window; "pre-treatment" typing and the patient's own isotype use the first exposure
point of the drugs that affect serology / SPEP; an immunoglobulin product's passive window runs
from its last administration (immunoglobulin.passive_window_months), as ig-passive-antibody reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lisguard.domain.context import IMMUNOGLOBULIN_CLASSES, add_months
from lisguard.domain.engine import MAX_ALIAS_HOPS
from lisguard.domain.knowledge import Effect, KnowledgeBase
from lisguard.domain.patient import (
    Exposure,
    ImmunoglobulinResult,
    IsotypeStatement,
    PatientState,
    RbcTyping,
    SerologyResult,
    state_key,
)
from lisguard.store.base import Store
from lisguard.store.desk import AlertQuery, AlertRecord, Snooze


@dataclass(frozen=True, slots=True)
class ExposureLine:
    drug: str  # knowledge-base id
    name: str
    exposure: Exposure
    window_end: datetime | None


@dataclass(frozen=True, slots=True)
class ProductLine:
    """An immunoglobulin product (drug_class ivig, scig or rhig) the feeds gave, ordered or
    mentioned; only a dose given (RXA) opens its passive window."""

    drug: str  # knowledge-base id
    name: str
    drug_class: str  # ivig | scig | rhig
    exposure: Exposure  # doses, grams, last dose
    window_end: datetime | None  # the last dose plus the passive window; None: no dose seen


IMMUNOGLOBULIN_TESTS = ("igg", "iga", "igm")  # the order the page shows them in


@dataclass(slots=True)
class PatientSummary:
    key: str  # the record shown: a retired identifier's survivor
    state: PatientState | None  # None: no clinical state on file (alerts may still exist)
    requested: str = ""  # the key asked for, when it is a retired identifier (an alias of key)
    exposures: list[ExposureLine] = field(default_factory=list)  # therapeutic antibodies
    products: list[ProductLine] = field(default_factory=list)  # immunoglobulin products
    hbv: list[SerologyResult] = field(default_factory=list)  # by marker, then time
    immunoglobulins: list[ImmunoglobulinResult] = field(default_factory=list)  # IgG, IgA, IgM
    typings: list[RbcTyping] = field(default_factory=list)
    pretreatment_typing: bool = False
    k_status: str = "unknown"  # positive | negative | unknown
    isotypes: list[IsotypeStatement] = field(default_factory=list)
    own_isotype: str | None = None
    alerts: list[AlertRecord] = field(default_factory=list)  # newest first, every status
    snoozes: list[Snooze] = field(default_factory=list)


def _drugs_with(kb: KnowledgeBase, effect: Effect) -> set[str]:
    return {d.id for d in kb.drugs.values() if d.enabled and effect in d.effects}


async def patient_summary(
    store: Store, kb: KnowledgeBase, key: str, processing_id: str = "P"
) -> PatientSummary | None:
    """None when lisguard knows nothing about this patient key. A retired identifier (merged
    away) shows its survivor's record, saying which key was asked for. `processing_id` T or D:
    the patient as that test feed left it (its own state and alerts, lisguard.domain.patient
    .state_key); production's view never shows test alerts."""
    requested = key
    state = await store.get_patient(state_key(key, processing_id))
    for _ in range(MAX_ALIAS_HOPS):
        if state is None or state.alias_of is None:
            break
        key = state.alias_of
        state = await store.get_patient(state_key(key, processing_id))
    test = processing_id != "P"
    alerts = await store.desk.search(AlertQuery(patient=key, test=test, order="newest", limit=200))
    for alias in state.merged_from if state is not None else ():
        # raised under an identifier before it was merged into this record
        alerts += await store.desk.search(
            AlertQuery(patient=alias, test=test, order="newest", limit=200)
        )
    alerts = [r for r in alerts if r.alert.processing_id == processing_id]
    alerts.sort(key=lambda r: r.created_at, reverse=True)
    snoozes = await store.desk.list_snoozes(patient_key=key)
    if state is None and not alerts and not snoozes:
        return None
    summary = PatientSummary(
        key, state, requested if requested != key else "", alerts=alerts, snoozes=snoozes
    )
    if state is None:
        return summary
    passive_months = kb.immunoglobulin.passive_window_months
    for drug_id, exposure in sorted(state.exposures.items()):
        drug = kb.drugs.get(drug_id)
        end = None
        if drug is not None and drug.drug_class in IMMUNOGLOBULIN_CLASSES:
            # passive antibodies come from a dose given, not an order or a mention
            if exposure.last_dose is not None:
                end = add_months(exposure.last_dose, passive_months)
            line = ProductLine(drug_id, drug.name, drug.drug_class.value, exposure, end)
            summary.products.append(line)
            continue
        if drug is not None and exposure.last_point is not None:
            end = add_months(exposure.last_point, kb.window_months(drug))
        name = drug.name if drug is not None else drug_id
        summary.exposures.append(ExposureLine(drug_id, name, exposure, end))
    summary.hbv = sorted(state.hbv, key=lambda r: (r.marker, _sortable(r.time)))
    summary.immunoglobulins = [
        state.immunoglobulins[t] for t in IMMUNOGLOBULIN_TESTS if t in state.immunoglobulins
    ]
    summary.typings = sorted(state.typings, key=lambda t: t.time.isoformat() if t.time else "~")
    summary.pretreatment_typing = state.has_pretreatment_typing(
        _drugs_with(kb, Effect.RBC_SEROLOGY)
    )
    if state.k_positive is not None:
        summary.k_status = "positive" if state.k_positive else "negative"
    summary.isotypes = list(state.isotypes)
    summary.own_isotype = state.own_isotype(_drugs_with(kb, Effect.SPEP_IFE))
    return summary


def _sortable(when: datetime | None) -> str:
    return when.isoformat() if when is not None else "~"  # undated last
