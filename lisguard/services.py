"""Use cases: ingest one HL7 message (-> ACKs + alerts), and the queries the API and pages use.

`Ingestor.ingest` is the one path every message takes, whatever carried it (MLLP, HTTP, a file
for `lisguard check`): read, de-duplicate, apply to patient state, run the rules, and commit the
raw message, its ACK, state, alerts and audit events in one store transaction. The ACK is only
returned after that commit, so an ACKed message is never lost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
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
from lisguard.domain.knowledge_holder import KnowledgeHolder
from lisguard.hl7v2.ack import AckError, Header, build_ack, peek_header, responses
from lisguard.hl7v2.batch import Batch, build_batch_ack, read_batch
from lisguard.hl7v2.framing import decode_bytes
from lisguard.hl7v2.printable import printable_message_type
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import CLINICAL_FAMILIES, IngestPolicy, Reading, Verdict, read_message
from lisguard.message_records import ScopedStates, message_audit
from lisguard.resends import Replay, note_duplicate
from lisguard.store.base import (
    MESSAGE_RECEIVED,
    AuditEvent,
    NewMessage,
    Store,
    StoreDataError,
    StoredMessage,
    StoreError,
)

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
    message_id: int = 0  # the row stored for it (accepted or ignored), or its stored original
    sender: str = ""  # MSH-3@MSH-4 as sent (unbounded: metrics keep a bounded set)
    # a batch (outcome "batch"): one result per message; responses holds the one batch ACK
    parts: list[IngestResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        # logs and metrics read this; a shifted field can put a name in MSH-9
        if self.message_type:
            self.message_type = printable_message_type(self.message_type)

    @property
    def ack_code(self) -> str:
        """MSA-1 of the last response ('' when none, or a batch: its messages have theirs)."""
        if not self.responses or self.parts or self.outcome == "batch":
            return ""
        for seg in self.responses[-1].split("\r"):
            if seg.startswith("MSA"):
                return seg[4:6]
        return ""


AlertListener = Callable[[list[Alert]], Awaitable[None]]
# told of each message of a batch as it is done: its result and seconds taken (log, metrics)
BatchObserver = Callable[[IngestResult, float], None]
# the AE text when the database refuses a value the message carries (a NUL written as \X00\)
UNSTORABLE = "a field holds a value that cannot be stored (a control character?): correct it"


class Ingestor:
    def __init__(
        self,
        store: Store,
        kb: KnowledgeBase | KnowledgeHolder,
        policy: IngestPolicy | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        routing: AlertRouting | None = None,
    ) -> None:
        self.store = store
        # the one holder a reload swaps (lisguard.reload); the policy is swapped by assignment
        self.knowledge = kb if isinstance(kb, KnowledgeHolder) else KnowledgeHolder(kb)
        self.policy = policy or IngestPolicy()
        self._relevance = Relevance(self.knowledge.kb)  # which messages need translating
        self.clock = clock
        self.routing = routing or AlertRouting()  # snooze, collapse, outbox rows
        self.listeners: list[AlertListener] = []

    @property
    def kb(self) -> KnowledgeBase:
        return self.knowledge.kb

    @property
    def relevance(self) -> Relevance:
        kb = self.knowledge.kb
        if self._relevance.kb is not kb:  # the knowledge was reloaded: its codes, its cache
            self._relevance = Relevance(kb)
        return self._relevance

    async def ingest(
        self,
        raw: bytes,
        *,
        peer: str = "",
        text: str | None = None,
        batched: bool = False,
        replay: Replay | None = None,
    ) -> IngestResult:
        """Process one message. `text` is the decoded message when the caller already split a
        batch (HTTP, files); otherwise `raw` is decoded here, honouring MSH-18, and may be a
        whole batch (an MLLP frame holding FHS/BHS...): see `ingest_batch`. `batched`: the
        message is one of a batch, answered by exactly one ACK (for the batch ACK). `replay`: a
        stored message sent again by an admin (lisguard.resends says what differs)."""
        if text is None:
            text = decode_bytes(raw)
            batch = read_batch(text)  # None at once for the usual frame: no batch segment
            if batch is not None:
                return await self.ingest_batch(batch, peer=peer)
        # one knowledge base for the whole message, whatever a reload swaps in meanwhile
        relevance = self.relevance
        reading = read_message(text, self.policy, relevance)
        result = await self._ingest_read(raw, reading, peer, batched, relevance.kb, replay)
        # MSH-3@MSH-4 as sent: metrics bound the series (lisguard.transport.metrics)
        result.sender = f"{reading.header.sending_application}@{reading.header.sending_facility}"
        return result

    async def _ingest_read(
        self,
        raw: bytes,
        reading: Reading,
        peer: str,
        batched: bool,
        kb: KnowledgeBase | None = None,
        replay: Replay | None = None,
    ) -> IngestResult:
        kb = self.kb if kb is None else kb
        keep = replay is None  # a replay refused again leaves no second dead letter
        verdict = reading.verdict
        if verdict is Verdict.UNREADABLE:
            return await self._dead_letter(raw, reading, peer, batched, keep)
        if verdict is Verdict.UNTRANSLATABLE:
            log.error("translate_failed", error=reading.failure)
            return await self._dead_letter(raw, reading, peer, batched, keep)
        if verdict is Verdict.REFUSED:
            return await self._refuse(raw, reading, peer, batched, keep)
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
        answered: StoredMessage | None = None
        try:
            async with self.store.transaction() as tx:
                # most messages (a CBC, a chemistry panel) say nothing the rules read: no state
                relevant = clinical is not None and touches_state(clinical, kb)
                first = patient_keys(clinical) if clinical is not None and relevant else []
                if clinical is not None and clinical.test:  # its own world's states
                    first = ScopedStates.stored_keys(first, clinical.processing_id)
                previous = await tx.find_message(key, patients=first)
                flags: tuple[str, ...] = ()
                if replay is not None:
                    answered = replay.answered_before(previous, digest)
                    flags = replay.flags(previous, digest)
                elif previous is not None and previous.content_hash == digest and previous.ack:
                    answered = previous
                elif previous is not None:
                    flags = ("control-id-reused",)
                if answered is not None:  # the stored ACK again, nothing processed again
                    return IngestResult(
                        answered.ack.split("\n"),
                        "duplicate",
                        key.control_id,
                        message.message_type,
                        message_id=answered.id,
                    )
                outcome = Outcome({}, [], [])
                if clinical is not None and relevant:
                    # a test message reads and writes its own world's states (state_key)
                    patients = ScopedStates(tx, clinical.processing_id) if clinical.test else tx
                    states = await patients.load_patients(patient_keys(clinical))
                    tried = set(patient_keys(clinical))
                    for _ in range(MAX_ALIAS_HOPS):  # a retired id's survivor, linked records
                        lock, read = keys_to_follow(clinical, states)
                        lock = [k for k in lock if k not in tried]
                        read = [k for k in read if k not in tried]
                        if not lock and not read:
                            break
                        tried.update(lock, read)
                        # the survivor is written (locked); linked records are only read
                        states.update(await patients.load_patients(lock))
                        states.update(await patients.load_patients(read, lock=False))
                    outcome = evaluate(clinical, states, kb)
                    for state in outcome.states.values():
                        await patients.save_patient(state)
                acks = responses(
                    header,
                    ok=True,
                    always_reply=policy.always_reply,
                    batched=batched,
                    app_name=policy.app_name,
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
                events = message_audit(now, message_id, digest, message, flags, outcome, alerts)
                if replay is not None:  # in the same transaction as what it did
                    done = "accepted" if verdict is Verdict.PROCESS else "ignored"
                    events.append(replay.processed(now, done, message_id, alerts, outcome.changes))
                if alerts:
                    events += await self.routing.route(self.store.desk, tx, alerts, now)
                await tx.add_audit(events)
        except StoreDataError as exc:
            answered = None
            # the content, not the database: the same message would fail again, so AE and a
            # dead letter (the raw bytes store as they are), never "resend later"
            log.error("store_refused_content", control_id=key.control_id, error=str(exc))
            return await self._dead_letter(
                raw, reading._replace(error=AckError("102", UNSTORABLE)), peer, batched, keep
            )
        except StoreError as exc:
            answered = None  # not answered from the store after all
            log.error("store_failed", control_id=key.control_id, error=str(exc))
            # the sender learns what to do, never the database's name, host or user (logged)
            err = AckError("207", "message not stored, resend later")
            acks = responses(
                header,
                ok=False,
                rejected=True,
                error=err,
                always_reply=policy.always_reply,
                batched=batched,
                app_name=policy.app_name,
            )
            return IngestResult(
                acks, "unavailable", key.control_id, message.message_type, error=str(exc)
            )
        finally:
            if answered is not None and replay is None:  # a sender's resend: recorded
                await note_duplicate(self.store, self.clock(), answered, peer)
        result = IngestResult(
            acks,
            "accepted" if verdict is Verdict.PROCESS else "ignored",
            key.control_id,
            message.message_type,
            alerts,
            flags=flags,
            store_seconds=time.perf_counter() - started,
            message_id=message_id,
        )
        if alerts:
            for listener in self.listeners:
                await listener(alerts)
        return result

    async def ingest_batch(
        self, batch: Batch, *, peer: str = "", observe: BatchObserver | None = None
    ) -> IngestResult:
        """A batch received as a unit (HL7 v2 ch. 2, batch protocol): each message through
        `ingest`, one at a time and with its own outcome (duplicates, dead letters, refusals),
        then one batch of ACKs answering them all (`lisguard.hl7v2.batch`). `observe` is told of
        each message (a transport's log and metrics); without it each is logged here."""
        parts: list[IngestResult] = []
        acks: list[str] = []
        app_name = self.policy.app_name
        for text in batch.messages:
            started = time.perf_counter()
            try:
                result = await self.ingest(text.encode("utf-8"), peer=peer, text=text, batched=True)
            except Exception as exc:  # a bug costs this message a NAK, not the whole batch
                log.exception("ingest_failed", error=type(exc).__name__)
                header = peek_header(text) or Header()
                err = AckError("207", f"internal error ({type(exc).__name__}); resend later")
                nak = responses(
                    header, ok=False, rejected=True, error=err, batched=True, app_name=app_name
                )
                result = IngestResult(nak, "rejected", header.control_id, error=err.reason)
            seconds = time.perf_counter() - started
            if observe is not None:
                observe(result, seconds)
            else:
                log.info(
                    "batch_message",
                    batch=batch.control_id,
                    type=result.message_type,
                    control_id=result.control_id,
                    outcome=result.outcome,
                    ack=result.ack_code,
                    alerts=[a.rule.value for a in result.alerts],
                    error=result.error or None,
                )
            parts.append(result)
            # one ACK each (batched); a resend of a message first sent alone replays the ACK(s)
            # stored then, and the last (the application ACK) stands for it
            acks.append(
                result.responses[-1]
                if result.responses
                else build_ack(peek_header(text) or Header(), "AA", app_name=app_name)
            )
        problems = batch.all_problems()
        if problems:
            log.warning("batch_envelope", batch=batch.control_id, problems=problems)
        return IngestResult(
            [build_batch_ack(batch, acks, app_name=app_name)],
            "batch",
            batch.control_id,
            alerts=[a for p in parts for a in p.alerts],
            error="; ".join(problems),
            parts=parts,
        )

    async def _refuse(
        self, raw: bytes, reading: Reading, peer: str, batched: bool = False, keep: bool = True
    ) -> IngestResult:
        assert reading.error is not None and reading.message is not None
        err = reading.error
        acks = responses(
            reading.header,
            ok=False,
            rejected=True,
            error=err,
            always_reply=self.policy.always_reply,
            batched=batched,
            app_name=self.policy.app_name,
        )
        message_type = reading.message.message_type
        if keep:
            await self._keep(raw, reading, acks, "AR", reading.key, message_type, peer)
        return IngestResult(
            acks, "rejected", reading.header.control_id, message_type, error=err.reason
        )

    async def _dead_letter(
        self, raw: bytes, reading: Reading, peer: str, batched: bool = False, keep: bool = True
    ) -> IngestResult:
        """Unreadable content: answer AE (CE) saying why, and keep the bytes for inspection."""
        assert reading.error is not None
        acks = responses(
            reading.header,
            ok=False,
            error=reading.error,
            always_reply=self.policy.always_reply,
            batched=batched,
            app_name=self.policy.app_name,
        )
        # a dead letter is filed under its control id only when it has one
        key = reading.key if reading.header.control_id else None
        if keep:
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
