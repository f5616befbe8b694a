"""EscalationStore over the memory backend (tests). Writes made inside the transaction are
applied at its commit (`on_commit`), like the rest of the memory store: a rolled-back
escalation leaves no row, outbox row or audit event behind."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lisguard.domain.alerts import Severity
from lisguard.store.codec import utc
from lisguard.store.desk import AlertQuery
from lisguard.store.escalation import (
    ChannelsFor,
    EscalatedAlert,
    Escalation,
    escalation_event,
    open_minutes,
)

_ALL = 1 << 62  # AlertQuery.limit meaning "no limit"


class MemoryEscalations:
    def __init__(self, store: Any) -> None:
        self._store = store
        self._rows: dict[str, Escalation] = {}

    async def escalate_due(
        self,
        *,
        now: datetime,
        raised_before: datetime,
        channels_for: ChannelsFor,
        after_minutes: float,
        limit: int = 100,
    ) -> list[EscalatedAlert]:
        now, raised_before = utc(now), utc(raised_before)
        escalated: list[EscalatedAlert] = []
        async with self._store.transaction() as tx:  # one at a time, like SQLite's writer
            query = AlertQuery(statuses=("open",), test=False, order="newest", limit=_ALL)
            candidates = [
                r
                for r in await self._store.desk.search(query)
                if r.alert.severity is Severity.HIGH
                and r.lead_id is None
                and r.created_at <= raised_before
                and r.alert.id not in self._rows
            ]
            for record in candidates[::-1][: max(limit, 0)]:  # oldest first
                channels = tuple(channels_for(record.alert))
                minutes = open_minutes(record.created_at, now)
                escalation = Escalation(record.alert.id, now, minutes, channels)
                if channels:
                    await self._store.desk.add_outbox(tx, record.alert.id, channels, now)
                escalated.append(
                    EscalatedAlert(escalation, record.alert, record.created_at, record.status)
                )
            if escalated:
                await tx.add_audit([escalation_event(e, after_minutes) for e in escalated])

                def apply() -> None:
                    for e in escalated:
                        self._rows.setdefault(e.alert.id, e.escalation)

                tx.on_commit.append(apply)
        return escalated

    async def get(self, alert_id: str) -> Escalation | None:
        return self._rows.get(alert_id)

    async def marks(self, alert_ids: Sequence[str]) -> dict[str, datetime]:
        return {i: self._rows[i].escalated_at for i in alert_ids if i in self._rows}

    async def still_open(self, limit: int = 200) -> list[EscalatedAlert]:
        found: list[EscalatedAlert] = []
        for alert_id, escalation in self._rows.items():
            record = await self._store.desk.get(alert_id)
            if record is not None and record.status == "open":
                found.append(
                    EscalatedAlert(escalation, record.alert, record.created_at, record.status)
                )
        found.sort(key=lambda e: e.created_at)
        return found[: max(limit, 0)]
