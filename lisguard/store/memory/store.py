"""In-memory store: the reference implementation of the Store contract.

Used by the tests and by `lisguard check`. It behaves like the SQL backends: transactions are
serialised (one at a time, like SQLite's single writer), their writes are invisible to other
readers until commit, an exception inside `transaction()` discards all of them, and values go
through the same JSON encodings as in a database, so what you read back is what a real backend
would give you (UTC-aware timestamps, fresh objects).

The encodings (`utc`, `dump_json`, ...) are lisguard.store.codec's, shared by all backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import ValidationError

from lisguard.domain.alerts import Alert
from lisguard.domain.audit import (
    event_hash,
)
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.audit_chain import start_keyed_chain
from lisguard.store.base import Transaction
from lisguard.store.codec import dump_json, load_alert, load_detail, load_patient, utc
from lisguard.store.records import (
    AuditEvent,
    NewMessage,
    StoredAlert,
    StoredAuditEvent,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)


@dataclass(frozen=True, slots=True)
class _AlertRow:
    alert_id: str
    seq: int  # insertion order: breaks created_at ties, newest first
    payload: str  # Alert JSON
    patient_key: str
    rule: str
    message_id: int
    created_at: datetime
    status: str = "open"

    def stored(self) -> StoredAlert:
        return StoredAlert(
            alert=load_alert(self.payload, self.alert_id),
            message_id=self.message_id,
            created_at=self.created_at,
            status=self.status,
        )


@dataclass(frozen=True, slots=True)
class _AuditRow:
    seq: int
    kind: str
    at: datetime
    actor: str
    subject: str
    detail: str  # JSON
    prev_hash: str | None = None
    hash: str | None = None

    def stored(self) -> StoredAuditEvent:
        event = AuditEvent(
            kind=self.kind,
            at=self.at,
            actor=self.actor,
            subject=self.subject,
            detail=load_detail(self.detail),
        )
        return StoredAuditEvent(seq=self.seq, event=event, prev_hash=self.prev_hash, hash=self.hash)


class MemoryStore:
    """Everything in dicts; lost when the process ends.

    `history=False` keeps what processing reads back (message keys, hashes and ACKs for
    duplicates, patient states, alerts) and drops what only a later inspection would read: raw
    bytes and audit events. `lisguard check` runs so: a 100k-message file neither holds every
    message in memory nor pays for an audit chain that ends with the process."""

    def __init__(self, *, history: bool = True, audit_key: bytes | None = None) -> None:
        self.history = history
        self.audit_key = audit_key  # keys the audit chain (lisguard.domain.audit)
        self._open = False
        self._lock = asyncio.Lock()
        self._messages: dict[int, StoredMessage] = {}
        self._raw: dict[int, bytes] = {}
        self._by_key: dict[MessageKey, list[int]] = {}
        self._dead_letters: list[int] = []
        self._patients: dict[str, str] = {}  # key -> PatientState JSON
        self._alerts: dict[str, _AlertRow] = {}
        self._audit: list[_AuditRow] = []
        self._next_message_id = 1
        self._next_alert_seq = 1
        self._next_audit_seq = 1
        from lisguard.store.memory.access import MemoryAccess  # access.py builds on this module

        self.access = MemoryAccess(self)  # tokens, audit search, retention
        from lisguard.store.memory.desk import MemoryDesk

        self.desk = MemoryDesk(self)  # alert desk: reviews, snoozes, repeats, outbox
        from lisguard.store.memory.escalation import MemoryEscalations

        self.escalations = MemoryEscalations(self)  # HIGH alerts left open too long
        from lisguard.store.memory.messages import MemoryMessageLog

        self.message_log = MemoryMessageLog(self)  # the message browser

    # -- lifecycle

    async def open(self) -> None:
        self._open = True  # nothing to migrate; data survives close()/open() on this instance
        await start_keyed_chain(self, self.audit_key)

    async def close(self) -> None:
        async with self._lock:  # let a running transaction finish
            self._open = False

    async def ping(self) -> bool:
        return self._open

    def _check_open(self) -> None:
        if not self._open:
            raise StoreUnavailable("the in-memory store is not open")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            self._check_open()
            tx = _MemoryTransaction(self)
            try:
                yield tx
            finally:
                tx.finished = True
            if tx.failed:
                raise StoreError("transaction rolled back: a store operation inside it failed")
            tx.commit()

    # -- reads (committed data only)

    async def get_message(self, message_id: int) -> StoredMessage | None:
        self._check_open()
        return self._messages.get(message_id)

    async def get_raw(self, message_id: int) -> bytes | None:
        self._check_open()
        return self._raw.get(message_id)

    async def count_messages(self) -> int:
        self._check_open()
        return len(self._messages)

    async def list_dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        self._check_open()
        ids = self._dead_letters[::-1][: max(limit, 0)]
        return [self._messages[i] for i in ids]

    async def get_patient(self, key: str) -> PatientState | None:
        self._check_open()
        text = self._patients.get(key)
        return None if text is None else load_patient(text, key)

    async def get_alert(self, alert_id: str) -> StoredAlert | None:
        self._check_open()
        row = self._alerts.get(alert_id)
        return None if row is None else row.stored()

    async def list_alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        patient: str | None = None,
        limit: int = 100,
    ) -> list[StoredAlert]:
        self._check_open()
        rows = [
            r
            for r in self._alerts.values()
            if (status is None or r.status == status)
            and (rule is None or r.rule == rule)
            and (patient is None or r.patient_key == patient)
        ]
        rows.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
        return [r.stored() for r in rows[: max(limit, 0)]]

    async def list_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[StoredAuditEvent]:
        self._check_open()
        rows = [r for r in self._audit if r.seq > after_seq][: max(limit, 0)]
        return [r.stored() for r in rows]


class _MemoryTransaction:
    """Writes are staged here and applied to the store in one step at commit."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.finished = False
        self.failed = False
        self._messages: dict[int, tuple[StoredMessage, bytes]] = {}
        self._patients: dict[str, str | None] = {}  # None: deleted
        self._alerts: dict[str, _AlertRow] = {}
        self._audit: list[_AuditRow] = []
        self.on_commit: list[Callable[[], None]] = []  # staged writes of store.desk

    def _check(self) -> None:
        if self.finished:
            raise StoreError("the transaction is finished")
        if not self._store._open:
            self.failed = True
            raise StoreUnavailable("the in-memory store is not open")

    def _fail(self, message: str) -> StoreError:
        self.failed = True
        return StoreError(message)

    async def find_message(
        self, key: MessageKey, *, patients: Sequence[str] = ()
    ) -> StoredMessage | None:
        del patients  # read when asked for: no round trip to save in-process
        self._check()
        for message, _ in reversed(self._messages.values()):
            if message.key == key:
                return message
        ids = self._store._by_key.get(key)
        return self._store._messages[ids[-1]] if ids else None

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        self._check()
        found: dict[str, PatientState] = {}
        for key in keys:
            text = self._patients[key] if key in self._patients else self._store._patients.get(key)
            if text is not None:
                try:
                    found[key] = load_patient(text, key)
                except StoreError:
                    self.failed = True
                    raise
        return found

    async def save_patient(self, state: PatientState) -> None:
        self._check()
        self._patients[state.key] = state.model_dump_json()

    async def delete_patient(self, key: str) -> None:
        self._check()
        self._patients[key] = None

    async def add_message(self, message: NewMessage) -> int:
        self._check()
        store = self._store
        message_id = store._next_message_id
        store._next_message_id += 1  # like a sequence: not given back on rollback
        stored = StoredMessage(
            id=message_id,
            key=message.key,
            content_hash=message.content_hash,
            message_type=message.message_type,
            received_at=utc(message.received_at),
            ack=message.ack,
            outcome=message.outcome,
            peer=message.peer,
            error=message.error,
            flags=tuple(message.flags),
        )
        self._messages[message_id] = (stored, bytes(message.raw))
        return message_id

    async def add_alerts(
        self, alerts: Sequence[Alert], *, message_id: int, created_at: datetime
    ) -> list[str]:
        self._check()
        if message_id not in self._messages and message_id not in self._store._messages:
            raise self._fail(f"alerts refer to message {message_id}, which does not exist")
        inserted: list[str] = []
        for alert in alerts:
            if alert.id in self._alerts or alert.id in self._store._alerts:
                continue
            try:
                payload = alert.model_dump_json()
            except (ValueError, ValidationError) as exc:
                raise self._fail(f"alert {alert.id} cannot be stored: {exc}") from exc
            self._alerts[alert.id] = _AlertRow(
                alert_id=alert.id,
                seq=0,  # numbered at commit, in insertion order
                payload=payload,
                patient_key=alert.patient_key,
                rule=alert.rule.value,
                message_id=message_id,
                created_at=utc(created_at),
            )
            inserted.append(alert.id)
        return inserted

    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        self._check()
        if not self._store.history:
            return
        for event in events:
            self._audit.append(
                _AuditRow(
                    seq=0,  # numbered at commit
                    kind=event.kind,
                    at=utc(event.at),
                    actor=event.actor,
                    subject=event.subject,
                    detail=dump_json(event.detail),
                )
            )

    def commit(self) -> None:
        """Apply the staged writes; synchronous, so no other task sees half of them."""
        store = self._store
        for message_id, (message, raw) in self._messages.items():
            store._messages[message_id] = message
            if store.history:
                store._raw[message_id] = raw
            if message.key is not None:
                store._by_key.setdefault(message.key, []).append(message_id)
            if message.error:
                store._dead_letters.append(message_id)
        for key, text in self._patients.items():
            if text is None:
                store._patients.pop(key, None)
            else:
                store._patients[key] = text
        for alert_id, row in self._alerts.items():
            store._alerts[alert_id] = replace(row, seq=store._next_alert_seq)
            store._next_alert_seq += 1
        for audit in self._audit:
            prev = store._audit[-1].hash if store._audit else None
            detail = load_detail(audit.detail)
            digest = event_hash(
                prev, audit.at, audit.kind, audit.actor, audit.subject, detail, store.audit_key
            )
            store._audit.append(
                replace(audit, seq=store._next_audit_seq, prev_hash=prev, hash=digest)
            )
            store._next_audit_seq += 1
        for apply in self.on_commit:
            apply()
