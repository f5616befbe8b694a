"""EscalationStore over the SQLite and PostgreSQL backends (one implementation, as sql.desk).

The claim is the escalations row: INSERT ... ON CONFLICT (alert_id) DO NOTHING RETURNING. On
PostgreSQL the candidate alerts are also locked FOR UPDATE SKIP LOCKED, so a replica passes over
an alert another replica (or a technologist acknowledging it) holds at that moment, and an
acknowledgement committed first takes the alert out of the candidates; the conflict is what
makes a second escalation impossible whatever the timing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lisguard.store.codec import load_alert
from lisguard.store.escalation import (
    ChannelsFor,
    EscalatedAlert,
    Escalation,
    escalation_event,
    open_minutes,
)
from lisguard.store.sql.parts import SqlPart

_ESCALATION = "e.alert_id, e.escalated_at, e.open_minutes, e.channels"


class SqlEscalations(SqlPart):
    """`store.escalations` of a SqliteStore or PostgresStore."""

    def _production(self) -> str:
        # alerts of test messages (MSH-11 T/D) never escalate: nobody is paged for a test feed
        if self._pg:
            return "coalesce(a.payload->>'processing_id', 'P') = 'P'"
        return "coalesce(json_extract(a.payload, '$.processing_id'), 'P') = 'P'"

    def _escalation(self, r: Any) -> Escalation:
        channels = r[3] if isinstance(r[3], list) else json.loads(r[3] or "[]")
        return Escalation(
            alert_id=r[0],
            escalated_at=self._parse(r[1]),
            open_minutes=float(r[2]),
            channels=tuple(channels),
        )

    def _channels(self, channels: Sequence[str]) -> str:
        return json.dumps(list(channels))

    async def escalate_due(
        self,
        *,
        now: datetime,
        raised_before: datetime,
        channels_for: ChannelsFor,
        after_minutes: float,
        limit: int = 100,
    ) -> list[EscalatedAlert]:
        order = "a.created_at, a.seq" if self._pg else "a.created_at, a.rowid"
        lock = " FOR UPDATE OF a SKIP LOCKED" if self._pg else ""
        cast = "::jsonb" if self._pg else ""
        escalated: list[EscalatedAlert] = []
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "SELECT a.payload, a.id, a.created_at, a.status FROM alerts a"
                " WHERE a.status = 'open' AND a.severity = 'high' AND a.lead_id IS NULL"
                f" AND a.created_at <= ? AND {self._production()}"
                " AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.alert_id = a.id)"
                f" ORDER BY {order} LIMIT ?{lock}",
                (self._stamp(raised_before), max(limit, 0)),
                "escalate_due",
            )
            for r in rows:
                alert, created_at = load_alert(r[0], r[1]), self._parse(r[2])
                channels = tuple(channels_for(alert))
                minutes = open_minutes(created_at, now)
                claimed = await self._exec(
                    tx,
                    "INSERT INTO escalations (alert_id, escalated_at, open_minutes, channels)"
                    f" VALUES (?, ?, ?, ?{cast}) ON CONFLICT (alert_id) DO NOTHING"
                    " RETURNING alert_id",
                    (alert.id, self._stamp(now), minutes, self._channels(channels)),
                    "escalate",
                )
                if not claimed:
                    continue  # another replica escalated it meanwhile
                if channels:
                    await self._store.desk.add_outbox(tx, alert.id, channels, now)
                escalation = Escalation(alert.id, now, minutes, channels)
                escalated.append(EscalatedAlert(escalation, alert, created_at, r[3]))
            if escalated:
                ids = [e.alert.id for e in escalated]
                if self._pg:  # the other replicas' pages hear of it at COMMIT (postgres/live.py)
                    await tx.notify_changed(ids)
                await tx.add_audit([escalation_event(e, after_minutes) for e in escalated])
        return escalated

    async def get(self, alert_id: str) -> Escalation | None:
        rows = await self._read(
            f"SELECT {_ESCALATION} FROM escalations e WHERE e.alert_id = ?", (alert_id,)
        )
        return self._escalation(rows[0]) if rows else None

    async def marks(self, alert_ids: Sequence[str]) -> dict[str, datetime]:
        ids = list(dict.fromkeys(alert_ids))
        if not ids:
            return {}
        rows = await self._read(
            "SELECT alert_id, escalated_at FROM escalations"
            f" WHERE alert_id IN ({', '.join('?' * len(ids))})",
            ids,
        )
        return {r[0]: self._parse(r[1]) for r in rows}

    async def still_open(self, limit: int = 200) -> list[EscalatedAlert]:
        order = "a.created_at, a.seq" if self._pg else "a.created_at, a.rowid"
        rows = await self._read(
            f"SELECT {_ESCALATION}, a.payload, a.created_at, a.status"
            " FROM escalations e JOIN alerts a ON a.id = e.alert_id"
            f" WHERE a.status = 'open' ORDER BY {order} LIMIT ?",
            (max(limit, 0),),
        )
        return [
            EscalatedAlert(self._escalation(r), load_alert(r[4], r[0]), self._parse(r[5]), r[6])
            for r in rows
        ]
