"""Words and evidence every rule's alert uses: what the exposure was, and from which segments."""

from __future__ import annotations

from datetime import datetime

from lisguard.domain.alerts import EvidenceItem
from lisguard.domain.context import ActiveExposure, RuleContext
from lisguard.domain.facts import LabOrder


def on_text(active: list[ActiveExposure]) -> str:
    parts = [f"{a.drug.name} ({how_text(a)}, window to {day(a.window_end)})" for a in active]
    return "On " + ", ".join(parts)


def how_text(a: ActiveExposure) -> str:
    """What the last exposure point was: a dose is a dose; a mention is not ("last" would read
    as a dose given)."""
    if a.last_dose is not None and a.last_dose == a.last_point:
        return f"last dose {day(a.last_dose)}"
    kinds = set(a.kinds)
    if kinds & {"order", "dispense", "give"}:
        return f"last ordered/planned {day(a.last_point)}"
    if "question" in kinds:
        return f"stated at order entry {day(a.last_point)}"
    return f"mentioned in free text {day(a.last_point)}"


def day(when: datetime | None) -> str:
    return when.date().isoformat() if when else "date unknown"


def order_evidence(ctx: RuleContext, order: LabOrder) -> EvidenceItem:
    svc = order.service
    return EvidenceItem(
        message=ctx.message.key.control_id,
        location=order.service_field,
        text="^".join(p for p in (svc.code, svc.text, svc.system) if p),
        time=ctx.order_time(order),
    )


def evidence_for(
    ctx: RuleContext, order: LabOrder, active: list[ActiveExposure]
) -> list[EvidenceItem]:
    items = [order_evidence(ctx, order)]
    for a in active:
        items.extend(a.evidence[-2:])
    return items
