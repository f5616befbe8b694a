"""What the store holds and the errors it raises: plain records, shared by the port (base), its
parts and every backend. No protocol and no backend lives here, so anything may import it.

Errors: a backend raises `StoreError` (or a subclass) for anything the service should answer with
a negative ACK; library exceptions (sqlite3, asyncpg, OSError) are translated at this boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import MessageKey


class StoreError(Exception):
    """The store could not do what was asked; the message must not be ACKed as accepted."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written (down, disk full, read-only)."""


class StoreDataError(StoreError):
    """The content cannot be stored as it is: a value the database refuses (a character it
    cannot hold, a string too long). Resending the same message fails the same way, so the
    service answers AE and keeps it as a dead letter, never AR "resend later"."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as received, with the ACK that will be sent for it."""

    raw: bytes
    content_hash: str  # sha256 hex of the raw bytes
    received_at: datetime  # wall clock, UTC
    ack: str  # the ACK text sent back (ER7, '\r' separated)
    outcome: str  # MSA-1 sent: AA, AE, AR, CA, CE, CR
    key: MessageKey | None = None  # None when MSH could not be read
    message_type: str = ""
    peer: str = ""  # who sent it (ip:port, or "http")
    error: str = ""  # why it could not be processed; non-empty marks a dead letter
    flags: tuple[str, ...] = ()  # e.g. ("control-id-reused",)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    key: MessageKey | None
    content_hash: str
    message_type: str
    received_at: datetime
    ack: str
    outcome: str
    peer: str
    error: str
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert: Alert
    message_id: int
    created_at: datetime  # wall clock, UTC
    status: str = "open"  # open | acknowledged | resolved


# The audit event every stored message writes, and the actor of events no person caused: most
# rows of the audit log. The SQL indexes on kind and actor leave them out (migration 0004).
MESSAGE_RECEIVED = "message.received"
SYSTEM_ACTOR = "system"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    kind: str  # message.received, exposure.recorded, alert.raised, config.loaded, ...
    at: datetime  # wall clock, UTC
    actor: str = SYSTEM_ACTOR
    subject: str = ""  # patient key, alert id, message id...
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredAuditEvent:
    seq: int
    event: AuditEvent
    prev_hash: str | None = None  # hash of the event before (lisguard.domain.audit)
    hash: str | None = None
