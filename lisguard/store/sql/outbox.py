"""The outbox part of SqlDesk (lisguard.store.sql.desk): what delivery workers and the API read
and write. PostgreSQL claims with FOR UPDATE SKIP LOCKED, so replicas never take the same row;
a lease (claimed_until) frees a row whose worker died."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lisguard.store.desk import OutboxItem, delivery_event
from lisguard.store.sql.parts import SqlPart

_OUTBOX = (
    "id, alert_id, channel, status, attempts, created_at, next_attempt_at, last_attempt_at,"
    " delivered_at, last_error"
)


class SqlOutbox(SqlPart):
    """The outbox half of SqlDesk."""

    def _item(self, r: Any) -> OutboxItem:
        return OutboxItem(
            id=int(r[0]),
            alert_id=r[1],
            channel=r[2],
            status=r[3],
            attempts=int(r[4]),
            created_at=self._parse(r[5]),
            next_attempt_at=self._parse(r[6]),
            last_attempt_at=self._time(r[7]),
            delivered_at=self._time(r[8]),
            last_error=r[9],
        )

    async def deliveries(self, alert_id: str) -> list[OutboxItem]:
        rows = await self._read(
            f"SELECT {_OUTBOX} FROM outbox WHERE alert_id = ? ORDER BY channel", (alert_id,)
        )
        return [self._item(r) for r in rows]

    async def backlog(self) -> dict[str, tuple[int, datetime | None]]:
        rows = await self._read(
            "SELECT channel, COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'"
            " GROUP BY channel"
        )
        return {r[0]: (int(r[1]), self._time(r[2])) for r in rows}

    # -- delivery workers

    async def claim(
        self,
        channel: str,
        *,
        now: datetime,
        due_before: datetime,
        lease_until: datetime,
        limit: int,
    ) -> list[OutboxItem]:
        skip = " FOR UPDATE SKIP LOCKED" if self._pg else ""
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "UPDATE outbox SET claimed_until = ?, attempts = attempts + 1, last_attempt_at = ?"
                " WHERE id IN (SELECT id FROM outbox WHERE channel = ? AND status = 'pending'"
                " AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
                f" ORDER BY next_attempt_at, id LIMIT ?{skip}) RETURNING {_OUTBOX}",
                (
                    self._stamp(lease_until),
                    self._stamp(now),
                    channel,
                    self._stamp(due_before),
                    self._stamp(now),
                    max(limit, 0),
                ),
                "claim",
            )
        return sorted((self._item(r) for r in rows), key=lambda i: (i.next_attempt_at, i.id))

    async def record(
        self,
        item: OutboxItem,
        *,
        outcome: str,
        at: datetime,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        if outcome == "delivered":
            sql = "status = 'delivered', delivered_at = ?, last_error = ''"
            params: tuple[Any, ...] = (self._stamp(at),)
        elif outcome == "retry":
            sql = "next_attempt_at = ?, last_error = ?"
            params = (self._stamp(next_attempt_at or at), error)
        else:
            sql = "status = 'failed', last_error = ?"
            params = (error,)
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                f"UPDATE outbox SET {sql}, claimed_until = NULL"
                " WHERE id = ? AND status = 'pending' RETURNING id",
                (*params, item.id),
                "record_delivery",
            )
            event = delivery_event(item, outcome, at, error)
            if rows and event is not None:
                await tx.add_audit([event])
            if rows:
                await self._notify(tx, item.alert_id)
        return bool(rows)

    async def _notify(self, tx: Any, alert_id: str) -> None:
        """PostgreSQL: the other replicas' live pages hear of it at COMMIT (lisguard.store
        .postgres.live). SQLite and memory stay in-process (lisguard.web.live)."""
        if self._pg:
            await tx.notify_changed([alert_id])
