"""Audit search: the filters a manager sets, and the SQL that answers them on both SQL backends
(the memory backend applies `kinds_match` and `patient_matches` itself).

The SQL is shaped by the indexes: the kind and actor indexes leave out the per-message
`message.received` rows (migration 0004), kinds compare in binary order (0005), and a patient's
events are looked up by two partial indexes (0006). A planner uses a partial index only when the
query repeats its condition, so the conditions here are written as the migrations write them;
`tests/integration/test_audit_search_plan.py` checks the plans on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lisguard.store.records import MESSAGE_RECEIVED, SYSTEM_ACTOR, AuditEvent

STATE_PREFIX = "state."  # state changes: the patient is the subject (lisguard.services)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[str, ...] = ()  # exact kinds, or a prefix ending in "." ("alert.")
    actor: str | None = None
    patient: str | None = None  # patient key: the events about it (patient_matches)
    rule: str | None = None  # detail.rule
    before_seq: int | None = None  # paging: events older than this
    limit: int = 500


def search_sql(
    query: AuditQuery, *, pg: bool, stamp: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The SELECT (with ? placeholders) and parameters of a search, newest first; `stamp` is
    the backend's way of writing a time."""
    where: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        where.append("at >= ?")
        params.append(stamp(query.since))
    if query.until is not None:
        where.append("at < ?")
        params.append(stamp(query.until))
    # The kind and actor indexes leave out the machine's message events (migration 0004);
    # the planner uses a partial index only when the query repeats its condition, literally.
    if query.kinds:
        where.append(_kind_clause(query.kinds, params, pg=pg))
        if not kinds_match(query.kinds, MESSAGE_RECEIVED):
            where.append(f"kind <> '{MESSAGE_RECEIVED}'")
    if query.actor:
        where.append("actor = ?")
        params.append(query.actor)
        if query.actor != SYSTEM_ACTOR:
            where.append(f"actor <> '{SYSTEM_ACTOR}'")
    detail = "detail->>'{0}'" if pg else "json_extract(detail, '$.{0}')"
    if query.patient:  # patient_matches; each side as its partial index says (0006)
        patient = detail.format("patient")
        if "^" in query.patient:
            where.append(
                f"((substr(kind, 1, {len(STATE_PREFIX)}) = '{STATE_PREFIX}' AND subject = ?)"
                f" OR ({patient} = ? AND {patient} IS NOT NULL))"
            )
            params += [query.patient, query.patient]
        else:  # a plain MRN: that MRN under any assigning authority, or none
            prefix = query.patient + "^"
            n = len(prefix)
            where.append(
                f"((substr(kind, 1, {len(STATE_PREFIX)}) = '{STATE_PREFIX}'"
                f" AND (subject = ? OR substr(subject, 1, {n}) = ?))"
                f" OR ({patient} IS NOT NULL AND ({patient} = ? OR substr({patient}, 1, {n}) = ?)))"
            )
            params += [query.patient, prefix, query.patient, prefix]
    if query.rule:
        where.append(f"{detail.format('rule')} = ?")
        params.append(query.rule)
    if query.before_seq is not None:
        where.append("seq < ?")
        params.append(query.before_seq)
    sql = "SELECT seq, kind, at, actor, subject, detail, prev_hash, hash FROM audit_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(max(0, min(query.limit, 10_000)))
    return sql, params


def _kind_clause(kinds: tuple[str, ...], params: list[Any], *, pg: bool) -> str:
    # In binary order (PostgreSQL: COLLATE "C", the kind index's, migration 0005) a prefix such
    # as "alert." is the range "alert." <= kind < "alert/": exactly the kinds that start with it
    # (kinds_match), and a range the index serves. SQLite's text order is binary already.
    column = 'kind COLLATE "C"' if pg else "kind"
    parts = []
    for kind in kinds:
        if kind.endswith("."):
            parts.append(f"({column} >= ? AND {column} < ?)")
            params += [kind, kind[:-1] + "/"]
        else:
            parts.append(f"{column} = ?")
            params.append(kind)
    return "(" + " OR ".join(parts) + ")"


def patient_matches(event: AuditEvent, patient: str) -> bool:
    """Whether an audit event is about `patient`: a change of its state, or an event naming it in
    detail.patient (alerts, snoozes, reads of its data). Other subjects are message ids, alert
    ids, token ids, paths: never a patient, whatever the patient key looks like."""

    def same(key: object) -> bool:
        # "MRN" alone is that MRN under any assigning authority ("MRN^HOSP"), as the search
        # hint says; "MRN^authority" is exactly that one
        if not isinstance(key, str):
            return False
        return key == patient or ("^" not in patient and key.startswith(patient + "^"))

    if event.kind.startswith(STATE_PREFIX) and same(event.subject):
        return True
    return same(event.detail.get("patient"))


def kinds_match(kinds: tuple[str, ...], kind: str) -> bool:
    """Whether an audit search's kinds filter selects `kind`: an exact kind, or a family given
    as a prefix ending in "." ("alert.")."""
    return any(kind.startswith(k) if k.endswith(".") else kind == k for k in kinds)
