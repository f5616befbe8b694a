"""The Store port: one interface, several backends (memory, SQLite, PostgreSQL).

A message is processed inside one `Transaction`: look up the message key (duplicates), load and
lock the patients it touches, save their new state, its alerts, the raw message with its ACK, and
the audit events - then commit, and only then is the ACK sent. Backends must make that unit
atomic and durable, and serialise work on the same patient (SQLite: one writer; PostgreSQL:
transaction-scoped advisory locks on the patient keys).

Errors: a backend raises `StoreError` (or a subclass) for anything the service should answer with
a negative ACK; library exceptions (sqlite3, asyncpg, OSError) are translated at this boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.access import AccessStore
from lisguard.store.desk import DeskStore
from lisguard.store.escalation import EscalationStore
from lisguard.store.message_search import MessageLog
from lisguard.store.records import (
    MESSAGE_RECEIVED,
    SYSTEM_ACTOR,
    AuditEvent,
    NewMessage,
    StoredAlert,
    StoreDataError,
    StoredAuditEvent,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)

__all__ = [  # the records are re-exported: most callers want one import for the store
    "MESSAGE_RECEIVED",
    "SYSTEM_ACTOR",
    "AccessStore",
    "AuditEvent",
    "DeskStore",
    "EscalationStore",
    "MessageLog",
    "NewMessage",
    "Store",
    "StoreDataError",
    "StoreError",
    "StoreUnavailable",
    "StoredAlert",
    "StoredAuditEvent",
    "StoredMessage",
    "Transaction",
]


class Transaction(Protocol):
    async def find_message(
        self, key: MessageKey, *, patients: Sequence[str] = ()
    ) -> StoredMessage | None:
        """The latest stored message with this MSH-3/MSH-4/MSH-10 key (and lock that key).
        `patients`: the keys the unit's first load_patients will ask for; a store may lock and
        read them now, in the same round trip (PostgreSQL does), in the same lock order."""
        ...

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        """States of the given patient keys that exist; locks them for this transaction
        (`lock=False`: only reads them, for records this message will not write: the records
        linked to its patient)."""
        ...

    async def save_patient(self, state: PatientState) -> None: ...

    async def delete_patient(self, key: str) -> None: ...

    async def add_message(self, message: NewMessage) -> int:
        """Store the raw message with its ACK; returns its id."""
        ...

    async def add_alerts(
        self, alerts: Sequence[Alert], *, message_id: int, created_at: datetime
    ) -> list[str]:
        """Insert alerts whose id is new; returns the ids actually inserted."""
        ...

    async def add_audit(self, events: Sequence[AuditEvent]) -> None: ...


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply schema migrations."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store can be read and written (readiness)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """One atomic unit of work; commits on normal exit, rolls back on exception."""
        ...

    async def get_message(self, message_id: int) -> StoredMessage | None: ...

    async def get_raw(self, message_id: int) -> bytes | None: ...

    async def count_messages(self) -> int: ...

    async def list_dead_letters(self, limit: int = 100) -> list[StoredMessage]: ...

    async def get_patient(self, key: str) -> PatientState | None: ...

    async def get_alert(self, alert_id: str) -> StoredAlert | None: ...

    async def list_alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        patient: str | None = None,
        limit: int = 100,
    ) -> list[StoredAlert]:
        """Newest first."""
        ...

    async def list_audit(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[StoredAuditEvent]: ...

    @property
    def access(self) -> AccessStore:
        """Tokens, audit search and retention (lisguard.store.access)."""
        ...

    @property
    def desk(self) -> DeskStore:
        """Alert reviews, snoozes, collapsed repeats and the delivery outbox
        (lisguard.store.desk)."""
        ...

    @property
    def escalations(self) -> EscalationStore:
        """HIGH alerts left open too long (lisguard.store.escalation)."""
        ...

    @property
    def message_log(self) -> MessageLog:
        """The message browser's searches and what each message did
        (lisguard.store.message_search)."""
        ...
