"""DeskStore over the memory backend (tests, `lisguard check`).

Like the rest of the memory store, writes made inside a transaction are staged and applied at
commit (the transaction's `on_commit` hooks), so a rolled-back ingest leaves no collapse, snooze
mark or outbox row behind.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lisguard.domain.alerts import SEVERITY_RANK
from lisguard.domain.triage import OrderedTest, is_background, queue_key
from lisguard.store.codec import load_alert, utc
from lisguard.store.desk import (
    UNRESOLVED,
    AlertNotFound,
    AlertQuery,
    AlertRecord,
    OutboxItem,
    Snooze,
    delivery_event,
    refuse_lift,
    refuse_unless,
    review_event,
    snooze_event,
)


@dataclass
class _Staging:
    records: dict[str, AlertRecord] = field(default_factory=dict)  # changed alerts
    outbox: list[tuple[str, str, datetime]] = field(default_factory=list)


class MemoryDesk:
    def __init__(self, store: Any) -> None:
        self._store = store
        self._records: dict[str, AlertRecord] = {}  # desk fields of alerts that changed
        self._snoozes: dict[int, Snooze] = {}
        self._outbox: dict[int, OutboxItem] = {}
        self._outbox_keys: dict[tuple[str, str], int] = {}
        self._leases: dict[int, datetime] = {}
        self._staging: weakref.WeakKeyDictionary[Any, _Staging] = weakref.WeakKeyDictionary()

    # -- plumbing

    def _stage(self, tx: Any) -> _Staging:
        staging = self._staging.get(tx)
        if staging is None:
            staging = self._staging[tx] = _Staging()
            tx.on_commit.append(lambda: self._apply(staging))
        return staging

    def _apply(self, staging: _Staging) -> None:
        for record in staging.records.values():
            self._commit_record(record)
        for alert_id, channel, at in staging.outbox:
            if (alert_id, channel) in self._outbox_keys:
                continue
            item_id = len(self._outbox) + 1
            self._outbox[item_id] = OutboxItem(item_id, alert_id, channel, "pending", 0, at, at)
            self._outbox_keys[(alert_id, channel)] = item_id

    def _commit_record(self, record: AlertRecord) -> None:
        alert_id = record.alert.id
        self._records[alert_id] = record
        row = self._store._alerts.get(alert_id)
        if row is not None:  # keep Store.list_alerts(status=...) in step
            self._store._alerts[alert_id] = replace(row, status=record.status)

    def _rows(self, tx: Any = None) -> list[Any]:
        rows = list(self._store._alerts.values())
        if tx is not None:
            rows += [r for r in tx._alerts.values() if r.alert_id not in self._store._alerts]
        return rows

    def _record(self, row: Any, tx: Any = None) -> AlertRecord:
        if tx is not None:
            staged = self._stage(tx).records.get(row.alert_id)
            if staged is not None:
                return staged
        known = self._records.get(row.alert_id)
        if known is not None:
            return known
        return AlertRecord(
            alert=load_alert(row.payload, row.alert_id),
            message_id=row.message_id,
            created_at=row.created_at,
            status=row.status,
        )

    def _find(self, alert_id: str, tx: Any = None) -> AlertRecord:
        row = self._store._alerts.get(alert_id)
        if row is None and tx is not None:
            row = tx._alerts.get(alert_id)
        if row is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        return self._record(row, tx)

    def _change(self, tx: Any, record: AlertRecord) -> AlertRecord:
        self._stage(tx).records[record.alert.id] = record
        return record

    # -- inside the ingest transaction

    async def find_snooze(
        self, tx: Any, patient_key: str, rule: str, at: datetime
    ) -> Snooze | None:
        at = utc(at)
        found = [
            s
            for s in self._snoozes.values()
            if s.patient_key == patient_key and s.rule == rule and s.active(at)
        ]
        return max(found, key=lambda s: s.expires_at) if found else None

    async def open_leads(
        self, tx: Any, patient_key: str, rule: str, since: datetime
    ) -> list[AlertRecord]:
        since = utc(since)
        leads = [
            (row.seq or 1 << 62, record)
            for row in self._rows(tx)
            if row.patient_key == patient_key and row.rule == rule
            for record in [self._record(row, tx)]
            if record.lead_id is None and record.status in UNRESOLVED and record.created_at >= since
        ]
        leads.sort(key=lambda p: (p[1].created_at, p[0]), reverse=True)
        return [record for _, record in leads]

    async def collapse(self, tx: Any, alert_id: str, lead_id: str, at: datetime) -> int:
        self._change(tx, replace(self._find(alert_id, tx), status="collapsed", lead_id=lead_id))
        lead = self._find(lead_id, tx)
        count = lead.repeat_count + 1
        self._change(tx, replace(lead, repeat_count=count, last_repeat_at=utc(at)))
        return count

    async def hold_back(self, tx: Any, alert_id: str, snooze_id: int) -> None:
        self._change(tx, replace(self._find(alert_id, tx), status="snoozed", snooze_id=snooze_id))

    async def add_outbox(
        self, tx: Any, alert_id: str, channels: Sequence[str], at: datetime
    ) -> None:
        self._stage(tx).outbox.extend((alert_id, c, utc(at)) for c in channels)

    # -- the technologist's actions

    async def acknowledge(
        self, alert_id: str, *, by: str, at: datetime, note: str = ""
    ) -> AlertRecord:
        async with self._store.transaction() as tx:
            found = self._find(alert_id)
            refuse_unless(found, "acknowledge")
            record = self._change(
                tx,
                replace(
                    found,
                    status="acknowledged",
                    acknowledged_by=by,
                    acknowledged_at=utc(at),
                    ack_note=note,
                ),
            )
            await tx.add_audit([review_event("alert.acknowledged", record, by, at, note=note)])
        return record

    async def resolve(
        self, alert_id: str, *, by: str, at: datetime, resolution: str, reason: str = ""
    ) -> AlertRecord:
        async with self._store.transaction() as tx:
            found = self._find(alert_id)
            refuse_unless(found, "resolve")
            record = self._change(
                tx,
                replace(
                    found,
                    status="resolved",
                    resolved_by=by,
                    resolved_at=utc(at),
                    resolution=resolution,
                    resolution_reason=reason,
                ),
            )
            event = review_event(
                "alert.resolved", record, by, at, resolution=resolution, reason=reason
            )
            await tx.add_audit([event])
        return record

    def _new_snooze(
        self, tx: Any, patient_key: str, rule: str, by: str, at: datetime, until: datetime, why: str
    ) -> Snooze:
        snooze = Snooze(len(self._snoozes) + 1, patient_key, rule, why, by, utc(at), utc(until))
        tx.on_commit.append(lambda: self._snoozes.__setitem__(snooze.id, snooze))
        return snooze

    async def snooze_alert(
        self, alert_id: str, *, by: str, at: datetime, expires_at: datetime, reason: str
    ) -> tuple[AlertRecord, Snooze]:
        async with self._store.transaction() as tx:
            found = self._find(alert_id)
            refuse_unless(found, "snooze")
            a = found.alert
            snooze = self._new_snooze(tx, a.patient_key, a.rule.value, by, at, expires_at, reason)
            record = self._change(tx, replace(found, status="snoozed", snooze_id=snooze.id))
            await tx.add_audit(
                [
                    snooze_event("snooze.created", snooze, by, at),
                    review_event("alert.snoozed", record, by, at, snooze=snooze.id, reason=reason),
                ]
            )
        return record, snooze

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
            snooze = self._new_snooze(tx, patient_key, rule, by, at, expires_at, reason)
            await tx.add_audit([snooze_event("snooze.created", snooze, by, at)])
        return snooze

    async def lift_snooze(self, snooze_id: int, *, by: str, at: datetime) -> Snooze:
        async with self._store.transaction() as tx:
            found = self._snoozes.get(snooze_id)
            if found is None:
                raise AlertNotFound(f"no snooze {snooze_id}")
            refuse_lift(found, utc(at))
            snooze = replace(found, lifted_by=by, lifted_at=utc(at))
            await tx.add_audit([snooze_event("snooze.lifted", snooze, by, at)])
            tx.on_commit.append(lambda: self._snoozes.__setitem__(snooze_id, snooze))
        return snooze

    # -- reads

    def _committed(self) -> list[tuple[int, AlertRecord]]:
        return [(row.seq, self._record(row)) for row in self._store._alerts.values()]

    async def get(self, alert_id: str) -> AlertRecord | None:
        row = self._store._alerts.get(alert_id)
        return None if row is None else self._record(row)

    def _matching(self, query: AlertQuery) -> list[tuple[int, AlertRecord]]:
        before = query.background_before
        return [
            (seq, r)
            for seq, r in self._committed()
            if (not query.statuses or r.status in query.statuses)
            and (query.rule is None or r.alert.rule.value == query.rule)
            and (query.location is None or r.alert.location == query.location)
            and (not query.audiences or r.alert.audience.value in query.audiences)
            and (query.patient is None or r.alert.patient_key == query.patient)
            and (query.test is None or r.alert.test == query.test)
            and (
                query.section == "all"
                or is_background(r.alert, r.created_at, before) == (query.section == "background")
            )
        ]

    async def search(self, query: AlertQuery) -> list[AlertRecord]:
        found = self._matching(query)
        if query.order == "triage":
            return self._triaged(query, [r for _, r in found])

        def order(pair: tuple[int, AlertRecord]) -> tuple[Any, ...]:
            seq, r = pair
            rank = SEVERITY_RANK[r.alert.severity] if query.order == "queue" else 0
            return (rank, r.created_at, seq)

        found.sort(key=order, reverse=True)
        return [r for _, r in found[: max(query.limit, 0)]]

    def _triaged(self, query: AlertQuery, records: list[AlertRecord]) -> list[AlertRecord]:
        pending = query.transfusion or (lambda _: False)
        keyed = [
            (queue_key(r.alert, r.created_at, pending(OrderedTest.of(r.alert))), r) for r in records
        ]
        if query.after is not None:
            keyed = [(k, r) for k, r in keyed if k < query.after]
        keyed.sort(key=lambda p: p[0], reverse=True)
        return [r for _, r in keyed[: max(query.limit, 0)]]

    async def count(self, query: AlertQuery) -> int:
        return len(self._matching(query))

    async def patient_counts(self, query: AlertQuery, patients: Sequence[str]) -> dict[str, int]:
        wanted = set(patients)
        counts: dict[str, int] = {}
        for _, r in self._matching(query):
            if r.alert.patient_key in wanted:
                counts[r.alert.patient_key] = counts.get(r.alert.patient_key, 0) + 1
        return counts

    async def repeats(self, lead_id: str) -> list[AlertRecord]:
        found = [(seq, r) for seq, r in self._committed() if r.lead_id == lead_id]
        found.sort(key=lambda p: (p[1].created_at, p[0]), reverse=True)
        return [r for _, r in found]

    async def counts(self, *, test: bool = False) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, r in self._committed():
            if r.alert.test == test:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    async def locations(self) -> list[str]:
        return sorted(
            {
                r.alert.location
                for _, r in self._committed()
                if r.status in UNRESOLVED and r.lead_id is None and r.alert.location
            }
        )

    async def get_snooze(self, snooze_id: int) -> Snooze | None:
        return self._snoozes.get(snooze_id)

    async def list_snoozes(
        self, *, patient_key: str | None = None, active_at: datetime | None = None
    ) -> list[Snooze]:
        return [
            s
            for s in sorted(self._snoozes.values(), key=lambda s: s.id, reverse=True)
            if (patient_key is None or s.patient_key == patient_key)
            and (active_at is None or s.active(utc(active_at)))
        ]

    async def deliveries(self, alert_id: str) -> list[OutboxItem]:
        items = [i for i in self._outbox.values() if i.alert_id == alert_id]
        return sorted(items, key=lambda i: i.channel)

    async def backlog(self) -> dict[str, tuple[int, datetime | None]]:
        found: dict[str, tuple[int, datetime | None]] = {}
        for item in self._outbox.values():
            if item.status != "pending":
                continue
            count, oldest = found.get(item.channel, (0, None))
            first = item.created_at if oldest is None else min(oldest, item.created_at)
            found[item.channel] = (count + 1, first)
        return found

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
        now, due_before = utc(now), utc(due_before)
        async with self._store.transaction():
            due = sorted(
                (
                    i
                    for i in self._outbox.values()
                    if i.channel == channel
                    and i.status == "pending"
                    and i.next_attempt_at <= due_before
                    and self._leases.get(i.id, now) <= now
                ),
                key=lambda i: (i.next_attempt_at, i.id),
            )[: max(limit, 0)]
            claimed = []
            for item in due:
                item = replace(item, attempts=item.attempts + 1, last_attempt_at=now)
                self._outbox[item.id] = item
                self._leases[item.id] = utc(lease_until)
                claimed.append(item)
        return claimed

    async def record(
        self,
        item: OutboxItem,
        *,
        outcome: str,
        at: datetime,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        async with self._store.transaction() as tx:
            current = self._outbox.get(item.id)
            if current is None or current.status != "pending":
                return False
            if outcome == "delivered":
                new = replace(current, status="delivered", delivered_at=utc(at), last_error="")
            elif outcome == "retry":
                when = utc(next_attempt_at or at)
                new = replace(current, next_attempt_at=when, last_error=error)
            else:
                new = replace(current, status="failed", last_error=error)
            event = delivery_event(item, outcome, at, error)
            if event is not None:
                await tx.add_audit([event])

            def apply() -> None:
                self._outbox[item.id] = new
                self._leases.pop(item.id, None)

            tx.on_commit.append(apply)
        return True
