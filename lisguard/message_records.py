"""What one message leaves besides its own row: its audit events (message received, each state
change, each alert raised), and, for a test message (MSH-11 T/D), patient states kept apart
from production's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from lisguard.domain.alerts import Alert
from lisguard.domain.engine import Outcome
from lisguard.domain.patient import PatientState, state_key
from lisguard.hl7v2.reader import Message
from lisguard.store.base import MESSAGE_RECEIVED, AuditEvent, Transaction


class ScopedStates:
    """The patient states of one transaction as a test message (MSH-11 T or D) sees them: under
    `state_key(key, processing_id)`, apart from production's. The engine works on plain keys."""

    def __init__(self, tx: Transaction, processing_id: str) -> None:
        self._tx = tx
        self._processing_id = processing_id

    @staticmethod
    def stored_keys(keys: Sequence[str], processing_id: str) -> list[str]:
        return [state_key(k, processing_id) for k in keys]

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        stored = {state_key(k, self._processing_id): k for k in keys}
        found = await self._tx.load_patients(list(stored), lock=lock)
        return {
            stored[k]: state.model_copy(update={"key": stored[k]})
            for k, state in found.items()
            if k in stored
        }

    async def save_patient(self, state: PatientState) -> None:
        scoped = state_key(state.key, self._processing_id)
        await self._tx.save_patient(state.model_copy(update={"key": scoped}))


def sender(message: Message) -> str:
    """MSH-3 and MSH-4, as an inspector reads them: application@facility."""
    msh = message.segments[0]
    return f"{msh.get(3)}@{msh.get(4)}"


def message_audit(
    now: datetime,
    message_id: int,
    digest: str,
    message: Message,
    flags: tuple[str, ...],
    outcome: Outcome,
    alerts: Iterable[Alert],
) -> list[AuditEvent]:
    pid = message.processing_id or "P"
    events = [
        AuditEvent(
            MESSAGE_RECEIVED,
            now,
            subject=str(message_id),
            detail={
                "control_id": message.control_id,
                "type": message.message_type,
                "sender": sender(message),
                "outcome": "AA",
                "sha256": digest,
                "flags": list(flags),
                "processing_id": pid,
            },
        )
    ]
    # an inspector reading a patient's history must see which changes a test message made
    scope = {"processing_id": pid} if pid != "P" else {}
    events.extend(
        AuditEvent(f"state.{c.kind}", now, subject=c.patient, detail={"detail": c.detail, **scope})
        for c in outcome.changes
    )
    events.extend(
        AuditEvent(
            "alert.raised",
            now,
            subject=a.id,
            detail={"rule": a.rule.value, "patient": a.patient_key, "order": a.order, **scope},
        )
        for a in alerts
    )
    return events
