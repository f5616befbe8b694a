"""DeskStore over the SQLite and PostgreSQL backends (one implementation; `?` placeholders are
rewritten to `$n` for PostgreSQL, which also gets row locks: FOR UPDATE, SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from lisguard.store.desk import (
    UNRESOLVED,
    AlertNotFound,
    AlertRecord,
    Snooze,
    refuse_lift,
    refuse_unless,
    review_event,
    snooze_event,
)
from lisguard.store.sql.desk_reads import ALERT_COLUMNS as _ALERT
from lisguard.store.sql.desk_reads import SqlAlertReads
from lisguard.store.sql.outbox import SqlOutbox

_SNOOZE = "id, patient_key, rule, reason, created_by, created_at, expires_at, lifted_by, lifted_at"


# the snooze in force for a patient and rule at a time (parameters: patient, rule, at, at)
_ACTIVE_SNOOZE = (
    f"SELECT {_SNOOZE} FROM snoozes WHERE patient_key = ? AND rule = ?"
    " AND lifted_at IS NULL AND created_at <= ? AND expires_at > ?"
    " ORDER BY expires_at DESC LIMIT 1"
)
# open alerts that lead no one (parameters: patient, rule, then UNRESOLVED's two statuses)
_OPEN_LEADS = (
    "FROM alerts WHERE patient_key = ? AND rule = ? AND lead_id IS NULL AND status IN (?, ?)"
)


class SqlDesk(SqlOutbox, SqlAlertReads):
    """The alert desk over either SQL backend (plumbing in lisguard.store.sql.parts)."""

    def __init__(
        self,
        store: Any,
        dialect: str,
        stamp: Callable[[datetime], Any],
        parse_time: Callable[[Any], datetime],
    ) -> None:
        super().__init__(store, dialect, stamp, parse_time)
        self._lock = " FOR UPDATE" if self._pg else ""  # SQLite: the one writer holds the lock

    def _snooze(self, r: Any) -> Snooze:
        return Snooze(
            id=int(r[0]),
            patient_key=r[1],
            rule=r[2],
            reason=r[3],
            created_by=r[4],
            created_at=self._parse(r[5]),
            expires_at=self._parse(r[6]),
            lifted_by=r[7],
            lifted_at=self._time(r[8]),
        )

    # -- inside the ingest transaction

    async def find_snooze(
        self, tx: Any, patient_key: str, rule: str, at: datetime
    ) -> Snooze | None:
        view = tx.routing.view(patient_key, rule) if self._pg else None
        if view is not None and view.at == at:  # the alert write's answer (postgres/routing.py)
            return None if view.snooze is None else self._snooze(view.snooze)
        when = self._stamp(at)
        rows = await self._exec(tx, _ACTIVE_SNOOZE, (patient_key, rule, when, when), "find_snooze")
        return self._snooze(rows[0]) if rows else None

    async def open_leads(
        self, tx: Any, patient_key: str, rule: str, since: datetime
    ) -> list[AlertRecord]:
        view = tx.routing.view(patient_key, rule) if self._pg else None
        if view is not None:  # locked by the alert write, counted with this unit's repeats
            leads = [self._record(row, count) for row, count in view.leads]
            return [lead for lead in leads if lead.created_at >= since]
        rows = await self._exec(
            tx,
            f"SELECT {_ALERT} {_OPEN_LEADS} AND created_at >= ?"
            f" ORDER BY created_at DESC, {self._tiebreak} DESC{self._lock}",
            (patient_key, rule, *UNRESOLVED, self._stamp(since)),
            "open_leads",
        )
        return [self._record(r) for r in rows]

    async def collapse(self, tx: Any, alert_id: str, lead_id: str, at: datetime) -> int:
        if self._pg:
            # buffered when the alert write answered the lead (and so its count)
            count = tx.routing_writes().collapse(alert_id, lead_id, at)
            if count is not None:
                return int(count)
            rows = await self._exec(  # one round trip: both rows in one statement
                tx,
                "WITH folded AS (UPDATE alerts SET status = 'collapsed', lead_id = ?"
                " WHERE id = ?) UPDATE alerts SET repeat_count = repeat_count + 1,"
                " last_repeat_at = ? WHERE id = ? RETURNING repeat_count",
                (lead_id, alert_id, self._stamp(at), lead_id),
                "collapse",
            )
            return int(rows[0][0]) if rows else 0
        await self._exec(
            tx,
            "UPDATE alerts SET status = 'collapsed', lead_id = ? WHERE id = ?",
            (lead_id, alert_id),
            "collapse",
        )
        rows = await self._exec(
            tx,
            "UPDATE alerts SET repeat_count = repeat_count + 1, last_repeat_at = ?"
            " WHERE id = ? RETURNING repeat_count",
            (self._stamp(at), lead_id),
            "collapse",
        )
        return int(rows[0][0]) if rows else 0

    async def hold_back(self, tx: Any, alert_id: str, snooze_id: int) -> None:
        if self._pg:  # sent with the unit's next write
            tx.routing_writes().hold_back(alert_id, snooze_id)
            return
        await self._exec(
            tx,
            "UPDATE alerts SET status = 'snoozed', snooze_id = ? WHERE id = ?",
            (snooze_id, alert_id),
            "hold_back",
        )

    async def add_outbox(
        self, tx: Any, alert_id: str, channels: Sequence[str], at: datetime
    ) -> None:
        if self._pg:  # sent with the unit's next write
            tx.routing_writes().add_outbox(alert_id, channels, at)
            return
        when = self._stamp(at)
        for channel in channels:
            await self._exec(
                tx,
                "INSERT INTO outbox (alert_id, channel, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (alert_id, channel) DO NOTHING",
                (alert_id, channel, when, when),
                "add_outbox",
            )

    # -- the technologist's actions

    async def _locked(self, tx: Any, alert_id: str, action: str) -> AlertRecord:
        rows = await self._exec(
            tx, f"SELECT {_ALERT} FROM alerts WHERE id = ?{self._lock}", (alert_id,), action
        )
        if not rows:
            raise AlertNotFound(f"no alert {alert_id!r}")
        record = self._record(rows[0])
        refuse_unless(record, action)
        return record

    async def acknowledge(
        self, alert_id: str, *, by: str, at: datetime, note: str = ""
    ) -> AlertRecord:
        async with self._store.transaction() as tx:
            await self._locked(tx, alert_id, "acknowledge")
            rows = await self._exec(
                tx,
                "UPDATE alerts SET status = 'acknowledged', acknowledged_by = ?,"
                f" acknowledged_at = ?, ack_note = ? WHERE id = ? RETURNING {_ALERT}",
                (by, self._stamp(at), note, alert_id),
                "acknowledge",
            )
            record = self._record(rows[0])
            await tx.add_audit([review_event("alert.acknowledged", record, by, at, note=note)])
            await self._notify(tx, alert_id)
        return record

    async def resolve(
        self, alert_id: str, *, by: str, at: datetime, resolution: str, reason: str = ""
    ) -> AlertRecord:
        async with self._store.transaction() as tx:
            await self._locked(tx, alert_id, "resolve")
            rows = await self._exec(
                tx,
                "UPDATE alerts SET status = 'resolved', resolved_by = ?, resolved_at = ?,"
                f" resolution = ?, resolution_reason = ? WHERE id = ? RETURNING {_ALERT}",
                (by, self._stamp(at), resolution, reason, alert_id),
                "resolve",
            )
            record = self._record(rows[0])
            event = review_event(
                "alert.resolved", record, by, at, resolution=resolution, reason=reason
            )
            await tx.add_audit([event])
            await self._notify(tx, alert_id)
        return record

    async def snooze_alert(
        self, alert_id: str, *, by: str, at: datetime, expires_at: datetime, reason: str
    ) -> tuple[AlertRecord, Snooze]:
        async with self._store.transaction() as tx:
            found = await self._locked(tx, alert_id, "snooze")
            snooze = await self._insert_snooze(
                tx, found.alert.patient_key, found.alert.rule.value, by, at, expires_at, reason
            )
            rows = await self._exec(
                tx,
                "UPDATE alerts SET status = 'snoozed', snooze_id = ? WHERE id = ?"
                f" RETURNING {_ALERT}",
                (snooze.id, alert_id),
                "snooze_alert",
            )
            record = self._record(rows[0])
            await tx.add_audit(
                [
                    snooze_event("snooze.created", snooze, by, at),
                    review_event("alert.snoozed", record, by, at, snooze=snooze.id, reason=reason),
                ]
            )
            await self._notify(tx, alert_id)
        return record, snooze

    async def _insert_snooze(
        self,
        tx: Any,
        patient_key: str,
        rule: str,
        by: str,
        at: datetime,
        expires_at: datetime,
        reason: str,
    ) -> Snooze:
        rows = await self._exec(
            tx,
            "INSERT INTO snoozes (patient_key, rule, reason, created_by, created_at, expires_at)"
            f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_SNOOZE}",
            (patient_key, rule, reason, by, self._stamp(at), self._stamp(expires_at)),
            "add_snooze",
        )
        return self._snooze(rows[0])

    async def add_snooze(
        self,
        patient_key: str,
        rule: str,
        *,
        by: str,
        at: datetime,
        expires_at: datetime,
        reason: str,
    ) -> Snooze:
        async with self._store.transaction() as tx:
            snooze = await self._insert_snooze(tx, patient_key, rule, by, at, expires_at, reason)
            await tx.add_audit([snooze_event("snooze.created", snooze, by, at)])
        return snooze

    async def lift_snooze(self, snooze_id: int, *, by: str, at: datetime) -> Snooze:
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx, f"SELECT {_SNOOZE} FROM snoozes WHERE id = ?{self._lock}", (snooze_id,), "lift"
            )
            if not rows:
                raise AlertNotFound(f"no snooze {snooze_id}")
            refuse_lift(self._snooze(rows[0]), at)
            rows = await self._exec(
                tx,
                f"UPDATE snoozes SET lifted_by = ?, lifted_at = ? WHERE id = ? RETURNING {_SNOOZE}",
                (by, self._stamp(at), snooze_id),
                "lift_snooze",
            )
            snooze = self._snooze(rows[0])
            await tx.add_audit([snooze_event("snooze.lifted", snooze, by, at)])
        return snooze

    # -- reads

    async def get_snooze(self, snooze_id: int) -> Snooze | None:
        rows = await self._read(f"SELECT {_SNOOZE} FROM snoozes WHERE id = ?", (snooze_id,))
        return self._snooze(rows[0]) if rows else None

    async def list_snoozes(
        self, *, patient_key: str | None = None, active_at: datetime | None = None
    ) -> list[Snooze]:
        where: list[str] = []
        params: list[Any] = []
        if patient_key is not None:
            where.append("patient_key = ?")
            params.append(patient_key)
        if active_at is not None:
            where.append("lifted_at IS NULL AND created_at <= ? AND expires_at > ?")
            params += [self._stamp(active_at), self._stamp(active_at)]
        sql = f"SELECT {_SNOOZE} FROM snoozes"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._read(sql + " ORDER BY id DESC LIMIT 500", params)
        return [self._snooze(r) for r in rows]
