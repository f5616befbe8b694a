"""In-memory store: the reference implementation of the Store contract.

Used by the tests and by `lisguard check`. It behaves like the SQL backends: transactions are
serialised (one at a time, like SQLite's single writer), their writes are invisible to other
readers until commit, an exception inside `transaction()` discards all of them, and values go
through the same JSON encodings as in a database, so what you read back is what a real backend
would give you (UTC-aware timestamps, fresh objects).

The encoding helpers at the top (`utc`, `dump_json`) are shared by all backends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ValidationError

from lisguard.domain.alerts import Alert
from lisguard.domain.audit import (
    canonical_detail,
    event_hash,
    hash_canonical,
    reads_back_the_same,
)
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.audit_chain import start_keyed_chain
from lisguard.store.base import (
    AuditEvent,
    NewMessage,
    StoredAlert,
    StoredAuditEvent,
    StoredMessage,
    StoreError,
    StoreUnavailable,
    Transaction,
)

# ---------------------------------------------------------------- encodings shared by backends


def utc(value: datetime) -> datetime:
    """A wall-clock timestamp as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # an audit record must not fail a message over an odd value


def dump_json(value: Any) -> str:
    """Canonical JSON for audit details (sorted keys, compact, non-ASCII kept): stable text is
    what a later hash chain over audit events will need."""
    return json.dumps(
        value, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def message_row(
    message: NewMessage, stamp: Callable[[datetime], Any], flags: Callable[[list[str]], Any]
) -> tuple[Any, ...]:
    """The `messages` row for a new message, in INSERT column order (sending_application,
    sending_facility, control_id, content_hash, message_type, received_at, raw, ack, outcome,
    peer, error, flags); `stamp` and `flags` encode for the dialect."""
    key = message.key
    return (
        None if key is None else key.sending_application,
        None if key is None else key.sending_facility,
        None if key is None else key.control_id,
        message.content_hash,
        message.message_type,
        stamp(message.received_at),
        bytes(message.raw),
        message.ack,
        message.outcome,
        message.peer,
        message.error,
        flags(list(message.flags)),
    )


def chain_rows(
    prev: str | None,
    events: Sequence[AuditEvent],
    stamp: Callable[[datetime], Any],
    key: bytes | None = None,
) -> list[tuple[Any, ...]]:
    """Audit rows ready to insert, each hashed over what will be stored and linked to `prev`:
    (at, kind, actor, subject, detail JSON, prev_hash, hash). `key`: the audit-chain key (an
    HMAC the database cannot recompute); None only for stores opened without one (tests)."""
    rows = []
    for e in events:
        detail = dump_json(e.detail)
        # the hash is over the canonical text a verifier rebuilds from the stored JSON; most
        # details are that text already (one JSON dump a message instead of dump, load, dump)
        canonical = (
            detail if reads_back_the_same(e.detail) else canonical_detail(load_detail(detail))
        )
        digest = hash_canonical(prev, utc(e.at), e.kind, e.actor, e.subject, canonical, key)
        rows.append((stamp(e.at), e.kind, e.actor, e.subject, detail, prev, digest))
        prev = digest
    return rows


def load_detail(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def load_patient(text: str | bytes, key: str) -> PatientState:
    """A stored PatientState; StoreError (so the message is NAKed, not crashed on) when the
    stored JSON no longer fits the model."""
    try:
        return PatientState.model_validate_json(text)
    except ValidationError as exc:
        raise StoreError(f"stored state of patient {key!r} cannot be read: {exc}") from exc


def load_alert(text: str | bytes, alert_id: str) -> Alert:
    try:
        return Alert.model_validate_json(text)
    except ValidationError as exc:
        raise StoreError(f"stored alert {alert_id!r} cannot be read: {exc}") from exc


# ---------------------------------------------------------------- the store


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
        from lisguard.store.access import MemoryAccess  # access.py builds on this module

        self.access = MemoryAccess(self)  # tokens, audit search, retention
        from lisguard.store.desk_memory import MemoryDesk

        self.desk = MemoryDesk(self)  # alert desk: reviews, snoozes, repeats, outbox
        from lisguard.store.escalation_memory import MemoryEscalations

        self.escalations = MemoryEscalations(self)  # HIGH alerts left open too long
        from lisguard.store.message_search import MemoryMessageLog

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

    async def find_message(self, key: MessageKey) -> StoredMessage | None:
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
