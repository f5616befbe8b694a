"""MessageLog over the memory backend (the port: lisguard.store.message_search)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lisguard.store.codec import utc
from lisguard.store.message_search import (
    DUPLICATE,
    LATER_KINDS,
    MAX_LIMIT,
    FoundMessage,
    MessageQuery,
    own_block,
)
from lisguard.store.records import StoredAlert, StoredAuditEvent, StoredMessage


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
