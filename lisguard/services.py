"""Use cases: ingest one HL7 message (-> ACKs + alerts), and the queries the API and pages use.

`Ingestor.ingest` is the one path every message takes, whatever carried it (MLLP, HTTP, a file
for `lisguard check`): read, de-duplicate, apply to patient state, run the rules, and commit the
raw message, its ACK, state, alerts and audit events in one store transaction. The ACK is only
returned after that commit, so an ACKed message is never lost.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from lisguard.alerting.routing import AlertRouting
from lisguard.domain.alerts import Alert
from lisguard.domain.engine import Outcome, evaluate, patient_keys, touches_state
from lisguard.domain.facts import ClinicalMessage, MessageKey
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.hl7v2.ack import AckError, Header, peek_header, responses
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.framing import decode_bytes
from lisguard.hl7v2.reader import HL7ReadError, Message, parse
from lisguard.store.base import AuditEvent, NewMessage, Store, StoreError

log = structlog.get_logger("lisguard.ingest")

# Message families whose content the rules read. Anything else is ACKed and stored, not read.
CLINICAL_FAMILIES = frozenset(
    {"ORM", "OML", "ORU", "OUL", "ORL", "OMP", "RDE", "RAS", "RDS", "RGV", "VXU", "ADT", "OMB"}
)


@dataclass(frozen=True)
class IngestPolicy:
    """What the site accepts. Defaults suit a lab feed: unknown types are ACKed and ignored,
    so ADT/SIU/MDM noise never turns into a NAK resend storm."""

    processing_ids: frozenset[str] = frozenset({"P", "T", "D"})
    unknown_types: str = "ignore"  # "ignore" (AA, stored, not read) or "reject" (AR)
    type_actions: dict[str, str] = field(default_factory=dict)  # e.g. {"QBP": "reject"}
    always_reply: bool = True
    app_name: str = "LISGUARD"


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
        self.clock = clock
        self.routing = routing or AlertRouting()  # snooze, collapse, outbox rows
        self.listeners: list[AlertListener] = []

    async def ingest(self, raw: bytes, *, peer: str = "", text: str | None = None) -> IngestResult:
        """Process one message. `text` is the decoded message when the caller already split a
        batch (HTTP, files); otherwise `raw` is decoded here, honouring MSH-18."""
        if text is None:
            text = decode_bytes(raw)
        # Identity of the content: segment text, whatever line endings or framing carried it.
        digest = hashlib.sha256(_normalised(text).encode()).hexdigest()
        try:
            message = parse(text)
        except HL7ReadError as exc:
            return await self._dead_letter(raw, digest, text, peer, exc)
        header = _header(message)
        key = MessageKey(
            message.segments[0].field_raw(3), message.segments[0].field_raw(4), message.control_id
        )
        family = message.message_type.partition("^")[0]
        policy = self.policy
        action = policy.type_actions.get(family) or policy.type_actions.get(message.message_type)
        if action is None:
            action = "process" if family in CLINICAL_FAMILIES else policy.unknown_types
        if message.processing_id and message.processing_id not in policy.processing_ids:
            err = AckError("202", f"processing id {message.processing_id!r} is not accepted here")
            return await self._refuse(raw, digest, header, key, message, peer, err)
        if action == "reject":
            err = AckError("200", f"message type {message.message_type!r} is not accepted here")
            return await self._refuse(raw, digest, header, key, message, peer, err)

        clinical: ClinicalMessage | None = None
        if action == "process":
            try:
                clinical = to_clinical(message)
            except Exception as exc:  # a translator bug must not kill the connection
                log.error("translate_failed", error=type(exc).__name__)
                err = AckError("207", f"could not read message content: {type(exc).__name__}")
                return await self._dead_letter(raw, digest, text, peer, err, header=header)

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
                outcome = Outcome({}, [], [], [])
                # most messages (a CBC, a chemistry panel) say nothing the rules read: no state
                if clinical is not None and touches_state(clinical, self.kb):
                    states = await tx.load_patients(patient_keys(clinical))
                    outcome = evaluate(clinical, states, self.kb)
                    for state in outcome.states.values():
                        await tx.save_patient(state)
                    for gone in outcome.removed:
                        await tx.delete_patient(gone)
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
            err = AckError("207", f"message not stored, resend later: {exc}")
            acks = responses(header, ok=False, rejected=True, error=err, app_name=policy.app_name)
            return IngestResult(
                acks, "unavailable", key.control_id, message.message_type, error=str(exc)
            )
        result = IngestResult(
            acks,
            "accepted" if clinical is not None else "ignored",
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

    async def _refuse(
        self,
        raw: bytes,
        digest: str,
        header: Header,
        key: MessageKey,
        message: Message,
        peer: str,
        err: AckError,
    ) -> IngestResult:
        acks = responses(header, ok=False, rejected=True, error=err, app_name=self.policy.app_name)
        await self._keep(raw, digest, acks, "AR", key, message.message_type, peer, err.reason)
        return IngestResult(
            acks, "rejected", key.control_id, message.message_type, error=err.reason
        )

    async def _dead_letter(
        self,
        raw: bytes,
        digest: str,
        text: str,
        peer: str,
        exc: HL7ReadError | AckError,
        *,
        header: Header | None = None,
    ) -> IngestResult:
        """Unreadable content: answer AE (CE) saying why, and keep the bytes for inspection."""
        if isinstance(exc, HL7ReadError):
            where = f" ({exc.segment}-{exc.field})" if exc.segment and exc.field else ""
            err = AckError(exc.code, f"{exc.reason}{where}", exc.segment or "", exc.field)
        else:
            err = exc
        header = header or peek_header(text) or Header()
        acks = responses(header, ok=False, error=err, app_name=self.policy.app_name)
        key = (
            MessageKey(header.sending_application, header.sending_facility, header.control_id)
            if header.control_id
            else None
        )
        await self._keep(raw, digest, acks, "AE", key, "", peer, err.reason)
        return IngestResult(acks, "error", header.control_id, error=err.reason)

    async def _keep(
        self,
        raw: bytes,
        digest: str,
        acks: list[str],
        outcome: str,
        key: MessageKey | None,
        message_type: str,
        peer: str,
        reason: str,
    ) -> None:
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
                            "message.received",
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


def _normalised(text: str) -> str:
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return text.lstrip("\ufeff").strip("\r")


def _header(message: Message) -> Header:
    msh = message.segments[0]
    return Header(
        sending_application=msh.field_raw(3),
        sending_facility=msh.field_raw(4),
        receiving_application=msh.field_raw(5),
        receiving_facility=msh.field_raw(6),
        control_id=message.control_id,
        trigger=msh.get(9, 2),
        processing_id=message.processing_id,
        version=message.version,
        accept_ack_type=msh.get(15).strip(),
        application_ack_type=msh.get(16).strip(),
        encoding=message.encoding,
    )


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
            "message.received",
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
