"""The message browser's reads: find stored messages, and what each one left behind.

"Did lisguard get message X, what did it answer, what did it do?" The `messages` row holds the
raw bytes, the ACK and the outcome; the audit log holds what the message did: the events
written in its own transaction (`message.received` first, then each state change, each alert
raised) share its received_at as their `at`, and follow one another in the chain, so they are
found through the audit time index without any link column. Later events about the message -
a sender's resend answered as a duplicate (`message.duplicate`), a replay
(`message.replayed`) - name it as their subject and are found through the kind index.

A search by control id (MSH-10) uses the message-key index (MSH-3, MSH-4, MSH-10) once per
sender: the few distinct senders are found by skipping through that same index, so no index is
added to the hot path. A search by MRN is a byte search in the raw messages (newest first,
narrowed by the other filters) which the caller confirms by reading PID-3: patient identifiers
are PHI and get no index of their own, and messages whose raw bytes retention has emptied are
not found by it.

The port; one implementation for both SQL backends (lisguard.store.sql.messages) and one for
memory (lisguard.store.memory.messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lisguard.store.records import MESSAGE_RECEIVED, StoredAlert, StoredAuditEvent, StoredMessage

# outcome filters: the MSA-1 stored, a dead letter (AE or AR kept with its reason), or a message
# whose sender sent it again and got the stored ACK back
OUTCOMES = ("AA", "AE", "AR", "duplicate", "dead-letter")
DUPLICATE = "message.duplicate"  # a resend answered with the stored ACK (subject: message id)
REPLAYED = "message.replayed"  # an admin's replay of the message (subject: message id)
LATER_KINDS = (DUPLICATE, REPLAYED)
MAX_SENDERS = 1000  # beyond this many MSH-3/MSH-4 pairs, a control id is looked up by a scan
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class MessageQuery:
    control_id: str | None = None  # MSH-10, exactly
    message_type: str | None = None  # a type ("ORM^O01") or a family ("ORM")
    outcome: str | None = None  # one of OUTCOMES
    peer: str | None = None  # who sent it: "10.1.2.3" (any port), "10.1.2.3:4711", "http"
    since: Any = None  # datetime: received at or after
    until: Any = None  # datetime: received before
    contains: bytes | None = None  # the raw bytes hold these (an MRN, confirmed by the caller)
    before_id: int | None = None  # paging: messages older than this id
    limit: int = 50


@dataclass(frozen=True, slots=True)
class FoundMessage:
    message: StoredMessage
    raw: bytes  # b"" once retention has emptied it


class MessageLog(Protocol):
    async def search(self, query: MessageQuery) -> list[FoundMessage]:
        """Newest first (by id)."""
        ...

    async def get(self, message_id: int) -> FoundMessage | None: ...

    async def events_of(self, message: StoredMessage) -> list[StoredAuditEvent]:
        """The audit events its own transaction wrote (message.received, state changes, alerts
        raised, routing), then later ones naming it (duplicates, replays); in chain order."""
        ...

    async def later_events(self, ids: Sequence[int]) -> dict[int, list[StoredAuditEvent]]:
        """Per message id: the duplicates and replays of it, in chain order."""
        ...

    async def alerts_of(self, message_id: int) -> list[StoredAlert]:
        """The alerts this message raised (stored with its id)."""
        ...


def own_block(
    message: StoredMessage, same_time: Sequence[StoredAuditEvent]
) -> list[StoredAuditEvent]:
    """Of the events written at the message's received_at (chain order), those of its own
    transaction: from its message.received to the next message.received."""
    block: list[StoredAuditEvent] = []
    subject = str(message.id)
    for row in same_time:
        if row.event.kind == MESSAGE_RECEIVED:
            if block:
                break
            if row.event.subject == subject:
                block.append(row)
        elif block:
            block.append(row)
    return block
