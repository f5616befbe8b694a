"""MessageLog over either SQL backend (the port and its search semantics:
lisguard.store.message_search)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lisguard.domain.facts import MessageKey
from lisguard.store.codec import load_alert, load_detail
from lisguard.store.message_search import (
    DUPLICATE,
    LATER_KINDS,
    MAX_LIMIT,
    MAX_SENDERS,
    FoundMessage,
    MessageQuery,
    own_block,
)
from lisguard.store.records import (
    MESSAGE_RECEIVED,
    AuditEvent,
    StoredAlert,
    StoredAuditEvent,
    StoredMessage,
)
from lisguard.store.sql.parts import SqlPart


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
