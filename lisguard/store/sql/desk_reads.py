"""The alert desk's reads over the SQLite and PostgreSQL backends: the queue's searches (the
filters, the triage order of lisguard.domain.triage with its keyset cursor), counts and
locations. SqlDesk (lisguard.store.sql.desk) adds the writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from lisguard.domain.alerts import RULE_AUDIENCE, Audience
from lisguard.domain.triage import BACKGROUND_RULES, OrderedTest
from lisguard.store.codec import load_alert
from lisguard.store.desk import UNRESOLVED, AlertQuery, AlertRecord
from lisguard.store.sql.parts import SqlPart

ALERT_COLUMNS = (
    "payload, message_id, created_at, status, id, lead_id, repeat_count, last_repeat_at,"
    " acknowledged_by, acknowledged_at, ack_note, resolved_by, resolved_at, resolution,"
    " resolution_reason, snooze_id"
)
_ALERT = ALERT_COLUMNS
_SEVERITY_RANK = "CASE severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END"
# the event time the triage order sorts on; when the alert has none, when it was raised
_URGENT_AT = "coalesce(event_time, created_at)"
_US = "\x1f"  # joins an ordered test's code, text and segment into one value
# the audience an alert stored before audiences existed reads as: its rule's (as Alert does);
# the literals are enum values from the code, never request input
_RULE_AUDIENCE = (
    "CASE rule "
    + " ".join(f"WHEN '{r.value}' THEN '{a.value}'" for r, a in RULE_AUDIENCE.items())
    + f" ELSE '{Audience.BLOOD_BANK.value}' END"  # Alert's default for an unknown rule
)


class SqlAlertReads(SqlPart):
    """Reads of stored alerts (plumbing in lisguard.store.sql.parts)."""

    def __init__(
        self,
        store: Any,
        dialect: str,
        stamp: Callable[[datetime], Any],
        parse_time: Callable[[Any], datetime],
    ) -> None:
        super().__init__(store, dialect, stamp, parse_time)
        self._tiebreak = "seq" if self._pg else "rowid"
        self._location = (
            "payload->>'location'" if self._pg else "json_extract(payload, '$.location')"
        )
        # MSH-11 of the message that raised the alert; alerts stored before it was kept are P
        self._processing_id = (
            "coalesce(payload->>'processing_id', 'P')"
            if self._pg
            else "coalesce(json_extract(payload, '$.processing_id'), 'P')"
        )
        # the ordered test (lisguard.domain.triage.OrderedTest) as one value: code, text and
        # the segment of the alert's first evidence (OBR, or BPO/BPX/BTX for a product)
        if self._pg:
            parts = (
                "payload->>'order_code'",
                "payload->>'order_text'",
                "substr(payload->'evidence'->0->>'location', 1, 3)",
            )
        else:
            parts = (
                "json_extract(payload, '$.order_code')",
                "json_extract(payload, '$.order_text')",
                "substr(json_extract(payload, '$.evidence[0].location'), 1, 3)",
            )
        separator = "chr(31)" if self._pg else "char(31)"
        self._ordered_test = f" || {separator} || ".join(f"coalesce({p}, '')" for p in parts)
        self._bytewise = ' COLLATE "C"' if self._pg else ""
        # who acts on the alert (Audience); alerts stored before it was kept: their rule's
        self._audience = (
            f"coalesce(payload->>'audience', {_RULE_AUDIENCE})"
            if self._pg
            else f"coalesce(json_extract(payload, '$.audience'), {_RULE_AUDIENCE})"
        )

    def _record(self, r: Any, count: int | None = None) -> AlertRecord:
        """A row of ALERT_COLUMNS; `count`: the repeat count as the unit leaves it, if known."""
        return AlertRecord(
            alert=load_alert(r[0], r[4]),
            message_id=int(r[1]),
            created_at=self._parse(r[2]),
            status=r[3],
            lead_id=r[5],
            repeat_count=int(r[6]) if count is None else count,
            last_repeat_at=self._time(r[7]),
            acknowledged_by=r[8],
            acknowledged_at=self._time(r[9]),
            ack_note=r[10],
            resolved_by=r[11],
            resolved_at=self._time(r[12]),
            resolution=r[13],
            resolution_reason=r[14],
            snooze_id=None if r[15] is None else int(r[15]),
        )

    # -- reads

    async def get(self, alert_id: str) -> AlertRecord | None:
        rows = await self._read(f"SELECT {_ALERT} FROM alerts WHERE id = ?", (alert_id,))
        return self._record(rows[0]) if rows else None

    def _filters(self, query: AlertQuery) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            params.extend(query.statuses)
        for column, value in (
            ("rule", query.rule),
            (self._location, query.location),
            ("patient_key", query.patient),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.audiences:
            where.append(f"{self._audience} IN ({', '.join('?' * len(query.audiences))})")
            params.extend(query.audiences)
        if query.test is not None:
            where.append(f"{self._processing_id} {'<>' if query.test else '='} 'P'")
        if query.section != "all":
            rules = sorted(BACKGROUND_RULES)
            if query.background_before is None:
                background = "1 = 0"  # nothing is background
            else:
                background = f"(rule IN ({', '.join('?' * len(rules))}) AND {_URGENT_AT} < ?)"
                params += [*rules, self._stamp(query.background_before)]
            where.append(background if query.section == "background" else f"NOT {background}")
        return where, params

    async def search(self, query: AlertQuery) -> list[AlertRecord]:
        where, params = self._filters(query)
        if query.order == "triage":
            return await self._triaged(query, where, params)
        sql = f"SELECT {_ALERT} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        first = f"{_SEVERITY_RANK} DESC, " if query.order == "queue" else ""
        sql += f" ORDER BY {first}created_at DESC, {self._tiebreak} DESC LIMIT ?"
        params.append(max(query.limit, 0))
        return [self._record(r) for r in await self._read(sql, params)]

    async def _pending_tests(
        self, query: AlertQuery, where: list[str], params: list[Any]
    ) -> list[str]:
        """The ordered tests among the matching alerts that mean a transfusion is waiting, as
        `_ordered_test` gives them: the knowledge base reads each distinct test once, here,
        so that SQL can sort on it (a handful of distinct tests for hundreds of alerts)."""
        if query.transfusion is None:
            return []
        sql = f"SELECT DISTINCT {self._ordered_test} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        pending = []
        for (key,) in await self._read(sql, params):
            code, _, rest = str(key or "").partition(_US)
            text, _, segment = rest.rpartition(_US)
            if query.transfusion(OrderedTest(code, text, segment)):
                pending.append(key)
        return pending

    async def _triaged(
        self, query: AlertQuery, where: list[str], params: list[Any]
    ) -> list[AlertRecord]:
        pending = await self._pending_tests(query, where, params)
        transfusion = (
            f"CASE WHEN {self._ordered_test} IN ({', '.join('?' * len(pending))}) THEN 1 ELSE 0 END"
            if pending
            else "0"
        )
        # the sort key computed once per row (lisguard.domain.triage.QueueKey), compared as a
        # row value for the cursor; ids compare byte-wise, as Python compares them
        inner = (
            f"SELECT {_ALERT}, {_SEVERITY_RANK} AS t_rank, {transfusion} AS t_transfusion,"
            f" {_URGENT_AT} AS t_urgent, created_at AS t_created, id{self._bytewise} AS t_id"
            " FROM alerts"
        )
        if where:
            inner += " WHERE " + " AND ".join(where)
        args: list[Any] = [*pending, *params]
        sql = f"SELECT * FROM ({inner}) AS q"
        if query.after is not None:
            a = query.after
            sql += " WHERE (t_rank, t_transfusion, t_urgent, t_created, t_id) < (?, ?, ?, ?, ?)"
            args += [
                a.rank,
                a.transfusion,
                self._stamp(a.urgent_at),
                self._stamp(a.created_at),
                a.alert_id,
            ]
        sql += (
            " ORDER BY t_rank DESC, t_transfusion DESC, t_urgent DESC, t_created DESC,"
            " t_id DESC LIMIT ?"
        )
        args.append(max(query.limit, 0))
        return [self._record(r) for r in await self._read(sql, args)]

    async def count(self, query: AlertQuery) -> int:
        where, params = self._filters(query)
        sql = "SELECT count(*) FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._read(sql, params)
        return int(rows[0][0])

    async def patient_counts(self, query: AlertQuery, patients: Sequence[str]) -> dict[str, int]:
        wanted = sorted(set(patients))
        if not wanted:
            return {}
        where, params = self._filters(query)
        where.append(f"patient_key IN ({', '.join('?' * len(wanted))})")
        sql = f"SELECT patient_key, count(*) FROM alerts WHERE {' AND '.join(where)}"
        rows = await self._read(sql + " GROUP BY patient_key", [*params, *wanted])
        return {r[0]: int(r[1]) for r in rows}

    async def repeats(self, lead_id: str) -> list[AlertRecord]:
        rows = await self._read(
            f"SELECT {_ALERT} FROM alerts WHERE lead_id = ?"
            f" ORDER BY created_at DESC, {self._tiebreak} DESC",
            (lead_id,),
        )
        return [self._record(r) for r in rows]

    async def counts(self, *, test: bool = False) -> dict[str, int]:
        rows = await self._read(
            f"SELECT status, count(*) FROM alerts WHERE {self._processing_id}"
            f" {'<>' if test else '='} 'P' GROUP BY status"
        )
        return {r[0]: int(r[1]) for r in rows}

    async def locations(self) -> list[str]:
        rows = await self._read(
            f"SELECT DISTINCT {self._location} FROM alerts"
            f" WHERE status IN (?, ?) AND lead_id IS NULL AND {self._location} <> ''"
            " ORDER BY 1",
            UNRESOLVED,
        )
        return [r[0] for r in rows]
