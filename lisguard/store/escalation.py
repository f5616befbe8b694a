"""The escalations part of the store: which HIGH alerts were left open too long, and when.

Every store has an `escalations` attribute (`EscalationStore`): one SQL implementation serves
SQLite and PostgreSQL (lisguard.store.sql.escalation), the memory backend has its own
(memory.escalation). The row (one per alert, its id the primary key) is the claim: it is
inserted with ON CONFLICT DO NOTHING in the transaction that also queues the alert's escalation
deliveries and appends the `alert.escalated` audit event, so two replicas on one database never
escalate an alert twice, and a restart never forgets one. Acknowledging the alert later leaves
the row: it records what happened; the banner asks for the escalated alerts still open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lisguard.domain.alerts import Alert
from lisguard.store.records import AuditEvent

ESCALATED = "alert.escalated"

# which escalation outbox channels an alert goes to (routing by audience and location)
ChannelsFor = Callable[[Alert], Sequence[str]]


@dataclass(frozen=True, slots=True)
class Escalation:
    alert_id: str
    escalated_at: datetime
    open_minutes: float  # how long the alert had been open when it escalated
    channels: tuple[str, ...] = ()  # escalation outbox channels it was queued on


@dataclass(frozen=True, slots=True)
class EscalatedAlert:
    """An escalation with the alert it is about, as the alert is now."""

    escalation: Escalation
    alert: Alert
    created_at: datetime  # when the alert was raised (stored)
    status: str


class EscalationStore(Protocol):
    async def escalate_due(
        self,
        *,
        now: datetime,
        raised_before: datetime,
        channels_for: ChannelsFor,
        after_minutes: float,
        limit: int = 100,
    ) -> list[EscalatedAlert]:
        """Escalate the lead alerts of production messages that are HIGH, still `open` and
        were raised before `raised_before`, and not escalated yet: in one transaction, the
        escalation row (a conflict means another replica was first: skipped), its outbox rows
        on `channels_for(alert)`, and an `alert.escalated` audit event each. Returns the ones
        this call escalated, oldest first."""
        ...

    async def get(self, alert_id: str) -> Escalation | None: ...

    async def marks(self, alert_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of these alerts escalated (the ones that did)."""
        ...

    async def still_open(self, limit: int = 200) -> list[EscalatedAlert]:
        """Escalated alerts whose status is still `open`, oldest first (the banner)."""
        ...


def escalation_event(found: EscalatedAlert, after_minutes: float) -> AuditEvent:
    """The audit event: what alert.raised names (rule, patient key) and no more patient data."""
    a, e = found.alert, found.escalation
    detail = {
        "rule": a.rule.value,
        "patient": a.patient_key,
        "severity": a.severity.value,
        "open_minutes": e.open_minutes,
        "after_minutes": after_minutes,
        "channels": list(e.channels),
        # in words, for readers of the log (the shift hand-over shows `to` and `reason`)
        "to": ", ".join(["pages", *e.channels]),
        "reason": f"HIGH alert open {e.open_minutes:g} min, past the {after_minutes:g}-minute"
        " limit, not acknowledged",
    }
    return AuditEvent(ESCALATED, e.escalated_at, subject=a.id, detail=detail)


def open_minutes(created_at: datetime, now: datetime) -> float:
    return round(max((now - created_at).total_seconds(), 0.0) / 60, 2)
