"""Use cases: ingest one HL7 message (-> ACKs + alerts), and the queries the API and pages use.

`Ingestor.ingest` is the one path every message takes, whatever carried it (MLLP, HTTP, a file
for `lisguard check`): read, de-duplicate, apply to patient state, run the rules, and commit the
raw message, its ACK, state, alerts and audit events in one store transaction. The ACK is only
returned after that commit, so an ACKed message is never lost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from lisguard.alerting.routing import AlertRouting
from lisguard.domain.alerts import Alert
from lisguard.domain.engine import (
    MAX_ALIAS_HOPS,
    Outcome,
    evaluate,
    keys_to_follow,
    patient_keys,
    touches_state,
)
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.hl7v2.ack import AckError, responses
from lisguard.hl7v2.framing import decode_bytes
from lisguard.hl7v2.reader import Message
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import CLINICAL_FAMILIES, IngestPolicy, Reading, Verdict, read_message
from lisguard.store.base import MESSAGE_RECEIVED, AuditEvent, NewMessage, Store, StoreError

log = structlog.get_logger("lisguard.ingest")

__all__ = ["CLINICAL_FAMILIES", "IngestPolicy", "IngestResult", "Ingestor"]


@dataclass
class IngestResult:
    responses: list[str]  # ACK messages to send back, in order
    outcome: str  # accepted, ignored, duplicate, error, rejected, unavailable
    control_id: str = ""
    message_type: str = ""
    alerts: list[Alert] = field(default_factory=list)
    error: str = ""
    flags: tuple[str, ...] = ()
    store_seconds: float = 0.0

    @property
    def ack_code(self) -> str:
        """MSA-1 of the last response ('' when none)."""
        if not self.responses:
            return ""
        for seg in self.responses[-1].split("\r"):
            if seg.startswith("MSA"):
                return seg[4:6]
        return ""


AlertListener = Callable[[list[Alert]], Awaitable[None]]


class Ingestor:
    def __init__(
        self,
        store: Store,
        kb: KnowledgeBase,
        policy: IngestPolicy | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        routing: AlertRouting | None = None,
    ) -> None:
        self.store = store
        self.kb = kb
        self.policy = policy or IngestPolicy()
        self.relevance = Relevance(kb)  # which messages need translating
        self.clock = clock
        self.routing = routing or AlertRouting()  # snooze, collapse, outbox rows
        self.listeners: list[AlertListener] = []

    async def ingest(self, raw: bytes, *, peer: str = "", text: str | None = None) -> IngestResult:
        """Process one message. `text` is the decoded message when the caller already split a
        batch (HTTP, files); otherwise `raw` is decoded here, honouring MSH-18."""
        if text is None:
            text = decode_bytes(raw)
        reading = read_message(text, self.policy, self.relevance)
        verdict = reading.verdict
        if verdict is Verdict.UNREADABLE:
            return await self._dead_letter(raw, reading, peer)
        if verdict is Verdict.UNTRANSLATABLE:
            log.error("translate_failed", error=reading.failure)
            return await self._dead_letter(raw, reading, peer)
        if verdict is Verdict.REFUSED:
            return await self._refuse(raw, reading, peer)
        message, header, digest, clinical = (
            reading.message,
            reading.header,
            reading.digest,
            reading.clinical,
        )
        assert message is not None and reading.key is not None
        key = reading.key
        policy = self.policy

        started = time.perf_counter()
        try:
            async with self.store.transaction() as tx:
                previous = await tx.find_message(key)
                flags: tuple[str, ...] = ()
                if previous is not None:
                    if previous.content_hash == digest and previous.ack:
                        return IngestResult(
                            previous.ack.split("\n"),
                            "duplicate",
                            key.control_id,
                            message.message_type,
                        )
                    flags = ("control-id-reused",)
                outcome = Outcome({}, [], [])
                # most messages (a CBC, a chemistry panel) say nothing the rules read: no state
                if clinical is not None and touches_state(clinical, self.kb):
                    states = await tx.load_patients(patient_keys(clinical))
                    tried = set(patient_keys(clinical))
                    for _ in range(MAX_ALIAS_HOPS):  # a retired id's survivor, linked records
                        lock, read = keys_to_follow(clinical, states)
                        lock = [k for k in lock if k not in tried]
                        read = [k for k in read if k not in tried]
                        if not lock and not read:
                            break
                        tried.update(lock, read)
                        # the survivor is written (locked); linked records are only read
                        states.update(await tx.load_patients(lock))
                        states.update(await tx.load_patients(read, lock=False))
                    outcome = evaluate(clinical, states, self.kb)
                    for state in outcome.states.values():
                        await tx.save_patient(state)
                acks = responses(
                    header, ok=True, always_reply=policy.always_reply, app_name=policy.app_name
                )
                now = self.clock()
                message_id = await tx.add_message(
                    NewMessage(
                        raw=raw,
                        content_hash=digest,
                        received_at=now,
                        ack="\n".join(acks),
                        outcome="AA",
                        key=key,
                        message_type=message.message_type,
                        peer=peer,
                        flags=flags,
                    )
                )
                new_ids = set(
                    await tx.add_alerts(outcome.alerts, message_id=message_id, created_at=now)
                )
                alerts = [a for a in outcome.alerts if a.id in new_ids]
                events = _audit(now, message_id, digest, message, flags, outcome, alerts)
                if alerts:
                    events += await self.routing.route(self.store.desk, tx, alerts, now)
                await tx.add_audit(events)
        except StoreError as exc:
            log.error("store_failed", control_id=key.control_id, error=str(exc))
            # the sender learns what to do, never the database's name, host or user (logged)
            err = AckError("207", "message not stored, resend later")
            acks = responses(header, ok=False, rejected=True, error=err, app_name=policy.app_name)
            return IngestResult(
                acks, "unavailable", key.control_id, message.message_type, error=str(exc)
            )
        result = IngestResult(
            acks,
            "accepted" if verdict is Verdict.PROCESS else "ignored",
            key.control_id,
            message.message_type,
            alerts,
            flags=flags,
            store_seconds=time.perf_counter() - started,
        )
        if alerts:
            for listener in self.listeners:
                await listener(alerts)
        return result

    async def _refuse(self, raw: bytes, reading: Reading, peer: str) -> IngestResult:
        assert reading.error is not None and reading.message is not None
        err = reading.error
        acks = responses(
            reading.header, ok=False, rejected=True, error=err, app_name=self.policy.app_name
        )
        message_type = reading.message.message_type
        await self._keep(raw, reading, acks, "AR", reading.key, message_type, peer)
        return IngestResult(
            acks, "rejected", reading.header.control_id, message_type, error=err.reason
        )

    async def _dead_letter(self, raw: bytes, reading: Reading, peer: str) -> IngestResult:
        """Unreadable content: answer AE (CE) saying why, and keep the bytes for inspection."""
        assert reading.error is not None
        acks = responses(
            reading.header, ok=False, error=reading.error, app_name=self.policy.app_name
        )
        # a dead letter is filed under its control id only when it has one
        key = reading.key if reading.header.control_id else None
        await self._keep(raw, reading, acks, "AE", key, "", peer)
        return IngestResult(acks, "error", reading.header.control_id, error=reading.error.reason)

    async def _keep(
        self,
        raw: bytes,
        reading: Reading,
        acks: list[str],
        outcome: str,
        key: MessageKey | None,
        message_type: str,
        peer: str,
    ) -> None:
        digest = reading.digest
        reason = reading.error.reason if reading.error is not None else ""
        now = self.clock()
        try:
            async with self.store.transaction() as tx:
                message_id = await tx.add_message(
                    NewMessage(
                        raw=raw,
                        content_hash=digest,
                        received_at=now,
                        ack="\n".join(acks),
                        outcome=outcome,
                        key=key,
                        message_type=message_type,
                        peer=peer,
                        error=reason,
                    )
                )
                await tx.add_audit(
                    [
                        AuditEvent(
                            MESSAGE_RECEIVED,
                            now,
                            subject=str(message_id),
                            detail={
                                "control_id": key.control_id if key else "",
                                "type": message_type,
                                "outcome": outcome,
                                "sha256": digest,
                                "error": reason,
                            },
                        )
                    ]
                )
        except StoreError as exc:
            # The NAK goes out anyway; the sender keeps the message and will resend.
            log.error("dead_letter_not_stored", error=str(exc))


def _sender(message: Message) -> str:
    """MSH-3 and MSH-4, as an inspector reads them: application@facility."""
    msh = message.segments[0]
    return f"{msh.get(3)}@{msh.get(4)}"


def _audit(
    now: datetime,
    message_id: int,
    digest: str,
    message: Message,
    flags: tuple[str, ...],
    outcome: Outcome,
    alerts: Iterable[Alert],
) -> list[AuditEvent]:
    events = [
        AuditEvent(
            MESSAGE_RECEIVED,
            now,
            subject=str(message_id),
            detail={
                "control_id": message.control_id,
                "type": message.message_type,
                "sender": _sender(message),
                "outcome": "AA",
                "sha256": digest,
                "flags": list(flags),
            },
        )
    ]
    events.extend(
        AuditEvent(f"state.{c.kind}", now, subject=c.patient, detail={"detail": c.detail})
        for c in outcome.changes
    )
    events.extend(
        AuditEvent(
            "alert.raised",
            now,
            subject=a.id,
            detail={"rule": a.rule.value, "patient": a.patient_key, "order": a.order},
        )
        for a in alerts
    )
    return events
