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

One implementation for both SQL backends (lisguard.store.sql_common) and one for memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lisguard.domain.facts import MessageKey
from lisguard.store.base import (
    MESSAGE_RECEIVED,
    AuditEvent,
    StoredAlert,
    StoredAuditEvent,
    StoredMessage,
)
from lisguard.store.memory import load_alert, load_detail, utc
from lisguard.store.sql_common import SqlPart

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


def _later_filter(kinds: Sequence[str]) -> str:
    # the kind index leaves out message.received rows: the planner uses it only when the query
    # repeats that condition (migration 0004)
    names = ", ".join(f"'{k}'" for k in kinds)
    return f"kind IN ({names}) AND kind <> '{MESSAGE_RECEIVED}'"


_COLUMNS = (
    "id, sending_application, sending_facility, control_id, content_hash, message_type,"
    " received_at, ack, outcome, peer, error, flags, raw"
)
_AUDIT_COLUMNS = "seq, kind, at, actor, subject, detail, prev_hash, hash"


class SqlMessageLog(SqlPart):
    """MessageLog over the SQLite or PostgreSQL store."""

    def _found(self, r: Any) -> FoundMessage:
        key = None if r[3] is None else MessageKey(r[1], r[2], r[3])
        flags = r[11]
        message = StoredMessage(
            id=int(r[0]),
            key=key,
            content_hash=r[4],
            message_type=r[5],
            received_at=self._parse(r[6]),
            ack=r[7],
            outcome=r[8],
            peer=r[9],
            error=r[10],
            flags=tuple(json.loads(flags) if isinstance(flags, str) else flags),
        )
        return FoundMessage(message, bytes(r[12]))

    def _event(self, r: Any) -> StoredAuditEvent:
        detail = load_detail(r[5]) if isinstance(r[5], str) else dict(r[5])
        event = AuditEvent(kind=r[1], at=self._parse(r[2]), actor=r[3], subject=r[4], detail=detail)
        return StoredAuditEvent(seq=int(r[0]), event=event, prev_hash=r[6], hash=r[7])

    async def _senders(self) -> list[tuple[str, str]] | None:
        """The distinct (MSH-3, MSH-4) pairs, by skipping through the message-key index (one
        short read per sender); None when there are more than MAX_SENDERS."""
        order = " ORDER BY sending_application, sending_facility LIMIT 1"
        rows = await self._read(
            "SELECT sending_application, sending_facility FROM messages"
            " WHERE sending_application IS NOT NULL" + order
        )
        found: list[tuple[str, str]] = []
        while rows:
            pair = (rows[0][0], rows[0][1])
            found.append(pair)
            if len(found) > MAX_SENDERS:
                return None
            rows = await self._read(
                "SELECT sending_application, sending_facility FROM messages"
                " WHERE (sending_application, sending_facility) > (?, ?)" + order,
                pair,
            )
        return found

    async def search(self, query: MessageQuery) -> list[FoundMessage]:
        where: list[str] = []
        params: list[Any] = []
        if query.control_id is not None:
            senders = await self._senders()
            if senders is None:
                where.append("control_id = ?")
                params.append(query.control_id)
            elif not senders:
                return []
            else:
                terms = " OR ".join(
                    "(sending_application = ? AND sending_facility = ? AND control_id = ?)"
                    for _ in senders
                )
                where.append(f"({terms})")
                for app, facility in senders:
                    params += [app, facility, query.control_id]
        if query.message_type:
            where.append("(message_type = ? OR substr(message_type, 1, ?) = ?)")
            prefix = query.message_type + "^"
            params += [query.message_type, len(prefix), prefix]
        if query.outcome in ("AA", "AE", "AR"):
            where.append("outcome = ?")
            params.append(query.outcome)
        elif query.outcome == "dead-letter":
            where.append("error <> ''")  # the partial index messages_dead_letter_idx
        elif query.outcome == "duplicate":
            number = "bigint" if self._pg else "INTEGER"
            where.append(
                f"id IN (SELECT CAST(subject AS {number}) FROM audit_events"
                f" WHERE {_later_filter([DUPLICATE])})"
            )
        if query.peer:
            where.append("(peer = ? OR substr(peer, 1, ?) = ?)")
            prefix = query.peer + ":"
            params += [query.peer, len(prefix), prefix]
        if query.since is not None:
            where.append("received_at >= ?")
            params.append(self._stamp(query.since))
        if query.until is not None:
            where.append("received_at < ?")
            params.append(self._stamp(query.until))
        if query.contains:
            where.append("position(? IN raw) > 0" if self._pg else "instr(raw, ?) > 0")
            params.append(query.contains)
        if query.before_id is not None:
            where.append("id < ?")
            params.append(query.before_id)
        sql = f"SELECT {_COLUMNS} FROM messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, min(query.limit, MAX_LIMIT)))
        return [self._found(r) for r in await self._read(sql, params)]

    async def get(self, message_id: int) -> FoundMessage | None:
        rows = await self._read(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        return self._found(rows[0]) if rows else None

    async def events_of(self, message: StoredMessage) -> list[StoredAuditEvent]:
        same_time = await self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE at = ? ORDER BY seq",
            (self._stamp(message.received_at),),
        )
        block = own_block(message, [self._event(r) for r in same_time])
        later = await self.later_events([message.id])
        return block + later.get(message.id, [])

    async def later_events(self, ids: Sequence[int]) -> dict[int, list[StoredAuditEvent]]:
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = await self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_events"
            f" WHERE {_later_filter(LATER_KINDS)} AND subject IN ({marks}) ORDER BY seq",
            [str(i) for i in ids],
        )
        found: dict[int, list[StoredAuditEvent]] = {}
        for r in rows:
            event = self._event(r)
            found.setdefault(int(event.event.subject), []).append(event)
        return found

    async def alerts_of(self, message_id: int) -> list[StoredAlert]:
        rows = await self._read(
            "SELECT payload, message_id, created_at, status, id FROM alerts"
            " WHERE message_id = ? ORDER BY created_at, id",
            (message_id,),
        )
        return [
            StoredAlert(load_alert(r[0], r[4]), int(r[1]), self._parse(r[2]), r[3]) for r in rows
        ]


class MemoryMessageLog:
    """MessageLog over the memory backend (reads its committed dicts, as MemoryAccess does)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def _found(self, message: StoredMessage) -> FoundMessage:
        return FoundMessage(message, self._store._raw.get(message.id, b""))

    def _matches(self, m: StoredMessage, q: MessageQuery, duplicated: set[int]) -> bool:
        if q.control_id is not None and (m.key is None or m.key.control_id != q.control_id):
            return False
        if q.message_type and not (
            m.message_type == q.message_type or m.message_type.startswith(q.message_type + "^")
        ):
            return False
        if q.outcome in ("AA", "AE", "AR") and m.outcome != q.outcome:
            return False
        if q.outcome == "dead-letter" and not m.error:
            return False
        if q.outcome == "duplicate" and m.id not in duplicated:
            return False
        if q.peer and not (m.peer == q.peer or m.peer.startswith(q.peer + ":")):
            return False
        if q.since is not None and m.received_at < utc(q.since):
            return False
        if q.until is not None and m.received_at >= utc(q.until):
            return False
        if q.contains and q.contains not in self._store._raw.get(m.id, b""):
            return False
        return q.before_id is None or m.id < q.before_id

    async def search(self, query: MessageQuery) -> list[FoundMessage]:
        self._store._check_open()
        duplicated = (
            {int(r.subject) for r in self._store._audit if r.kind == DUPLICATE}
            if query.outcome == "duplicate"
            else set()
        )
        found: list[FoundMessage] = []
        limit = max(0, min(query.limit, MAX_LIMIT))
        for message_id in sorted(self._store._messages, reverse=True):
            if len(found) >= limit:
                break
            message = self._store._messages[message_id]
            if self._matches(message, query, duplicated):
                found.append(self._found(message))
        return found

    async def get(self, message_id: int) -> FoundMessage | None:
        self._store._check_open()
        message = self._store._messages.get(message_id)
        return None if message is None else self._found(message)

    async def events_of(self, message: StoredMessage) -> list[StoredAuditEvent]:
        self._store._check_open()
        at = utc(message.received_at)
        same_time = [r.stored() for r in self._store._audit if r.at == at]
        later = await self.later_events([message.id])
        return own_block(message, same_time) + later.get(message.id, [])

    async def later_events(self, ids: Sequence[int]) -> dict[int, list[StoredAuditEvent]]:
        self._store._check_open()
        wanted = {str(i) for i in ids}
        found: dict[int, list[StoredAuditEvent]] = {}
        for r in self._store._audit:
            if r.kind in LATER_KINDS and r.subject in wanted:
                found.setdefault(int(r.subject), []).append(r.stored())
        return found

    async def alerts_of(self, message_id: int) -> list[StoredAlert]:
        self._store._check_open()
        rows = [r for r in self._store._alerts.values() if r.message_id == message_id]
        rows.sort(key=lambda r: (r.created_at, r.seq))
        return [r.stored() for r in rows]
