"""What a rule sees, and what it returns. Rules are small callables: `(RuleContext) -> drafts`."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lisguard.domain.alerts import Audience, EvidenceItem, Recommendation, RuleId, Severity
from lisguard.domain.facts import ClinicalMessage, LabOrder
from lisguard.domain.knowledge import Drug, DrugClass, Effect, KnowledgeBase, TestCategory
from lisguard.domain.patient import Exposure, ImmunoglobulinResult, PatientState


def add_months(when: datetime, months: int) -> datetime:
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


IMMUNOGLOBULIN_CLASSES = frozenset({DrugClass.IVIG, DrugClass.SCIG, DrugClass.RHIG})
POOLED_IG_CLASSES = frozenset({DrugClass.IVIG, DrugClass.SCIG})  # many donors' antibodies
BISPECIFIC_CLASSES = frozenset({DrugClass.BCMA_BISPECIFIC, DrugClass.GPRC5D_BISPECIFIC})


@dataclass(frozen=True, slots=True)
class ActiveExposure:
    drug: Drug
    last_point: datetime | None
    window_end: datetime | None
    evidence: tuple[EvidenceItem, ...]
    last_dose: datetime | None = None
    kinds: tuple[str, ...] = ()  # how the feeds said it: administration, order, mention...
    doses: int = 0  # administrations seen
    grams: float | None = None  # their grams added up, where the messages gave them


@dataclass(frozen=True, slots=True)
class AlertDraft:
    rule: RuleId
    order: str
    severity: Severity
    recommendations: list[Recommendation]
    text: str
    drugs: list[str] = field(default_factory=list)
    event_time: datetime | None = None
    evidence: list[EvidenceItem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    audience: Audience | None = None  # None: the rule's (alerts.RULE_AUDIENCE)


@dataclass
class RuleContext:
    """The message, the patient before and after it, and the catalog."""

    message: ClinicalMessage
    patient_key: str
    before: PatientState
    after: PatientState
    kb: KnowledgeBase
    # derived once per message, shared by all rules:
    order_categories: list[frozenset[TestCategory]] = field(default_factory=list)
    # the message's orders, each under the one number it goes by (placer or filler, as first
    # seen: PatientState.order_number)
    orders: list[LabOrder] = field(default_factory=list)
    new_pharmacy_drugs: list[Drug] = field(default_factory=list)
    # IgG/IgA/IgM results this message reported, with the index of their order in `orders`
    new_immunoglobulins: list[tuple[int, ImmunoglobulinResult]] = field(default_factory=list)

    def lab_orders(self) -> Iterable[tuple[LabOrder, frozenset[TestCategory]]]:
        """Orders that are live (not cancelled), with their test categories."""
        for order, cats in zip(self.orders, self.order_categories, strict=True):
            if not order.cancelled:
                yield order, cats

    def order_time(self, order: LabOrder) -> datetime | None:
        return order.time or self.message.time

    def drugs_with(self, effect: Effect) -> set[str]:
        return {d.id for d in self.kb.drugs.values() if d.enabled and effect in d.effects}

    def active(self, when: datetime | None, effect: Effect) -> list[ActiveExposure]:
        """Exposures with `effect` active at `when`, judged on event time (never the wall clock).

        Active: first exposure point <= when <= last exposure point + the drug's window. An
        event with no time at all is judged against every dated exposure (the safe side).
        """
        return self.active_of(when, self.drugs_with(effect))

    def active_of(self, when: datetime | None, drug_ids: set[str]) -> list[ActiveExposure]:
        """`active` for the given drugs, whatever their effects (the bispecifics have none)."""
        found: list[ActiveExposure] = []
        for drug_id, exp in self.after.exposures.items():
            drug = self.kb.drugs.get(drug_id)
            if drug is None or not drug.enabled or drug_id not in drug_ids:
                continue
            if exp.first_point is None or exp.last_point is None:
                continue  # an undated exposure cannot be placed in time
            end = add_months(exp.last_point, self.kb.window_months(drug))
            if when is not None and not (exp.first_point <= when <= end):
                continue
            found.append(_active(drug, exp, exp.last_point, end))
        return found

    def passive_sources(
        self, when: datetime | None, classes: frozenset[DrugClass] = IMMUNOGLOBULIN_CLASSES
    ) -> list[ActiveExposure]:
        """Immunoglobulin products given (an administration, RXA) before `when` whose passive
        window (immunoglobulin.passive_window_months after the last dose) covers it. An order
        or a mention is no dose: it opens no window."""
        months = self.kb.immunoglobulin.passive_window_months
        found: list[ActiveExposure] = []
        for drug_id, exp in self.after.exposures.items():
            drug = self.kb.drugs.get(drug_id)
            if drug is None or not drug.enabled or drug.drug_class not in classes:
                continue
            if exp.last_dose is None:
                continue
            end = add_months(exp.last_dose, months)
            # from the first dose: an order or a mention before it puts nothing in the blood
            first = exp.first_dose or exp.last_dose
            if when is not None and not (first <= when <= end):
                continue
            found.append(_active(drug, exp, exp.last_dose, end))
        return found


def _active(drug: Drug, exp: Exposure, last: datetime, end: datetime) -> ActiveExposure:
    return ActiveExposure(
        drug, last, end, tuple(exp.evidence), exp.last_dose, tuple(exp.kinds), exp.doses, exp.grams
    )


Rule = Callable[[RuleContext], Iterable[AlertDraft]]
