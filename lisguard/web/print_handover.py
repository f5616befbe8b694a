"""The shift hand-over (GET /api/handover?since=): what the next shift must pick up, per patient.

Listed: unresolved alerts (open, or acknowledged and not resolved) that were raised, repeated or
acknowledged since `since`, and every alert escalated since then whatever its status. Escalation
is read from the audit log (`alert.escalated` events, subject the alert id), so the hand-over
does not depend on how the desk stores it. Unresolved alerts with no activity since `since` are
counted, not listed: the page says how many, so widening the time shows them. Production alerts
only (test messages keep their own queue); collapsed repeats are counted on their lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import Store, StoredAuditEvent
from lisguard.store.desk import UNRESOLVED, AlertQuery, AlertRecord
from lisguard.web.views import AUDIENCE_TITLES, RULE_TITLES

ESCALATED = "alert.escalated"
MAX_ALERTS = 500  # one page of unresolved alerts; more is said, not hidden
MAX_ESCALATIONS = 1000
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
# what an escalation event may say beside who and when (the escalation desk writes them)
ESCALATION_FIELDS = ("to", "level", "reason", "note")


@dataclass(slots=True)
class Handover:
    since: datetime
    records: dict[str, AlertRecord] = field(default_factory=dict)  # listed, by alert id
    escalations: dict[str, list[StoredAuditEvent]] = field(default_factory=dict)  # by alert id
    older_unresolved: int = 0  # unresolved, nothing since `since`: counted, not listed
    truncated: bool = False  # more unresolved alerts than MAX_ALERTS

    @property
    def patients(self) -> list[str]:
        return sorted({r.alert.patient_key for r in self.records.values()})


def _latest(record: AlertRecord) -> datetime:
    times = [record.created_at, record.last_repeat_at, record.acknowledged_at]
    return max(t for t in times if t is not None)


async def collect(store: Store, since: datetime) -> Handover:
    handover = Handover(since)
    unresolved = await store.desk.search(
        AlertQuery(statuses=UNRESOLVED, test=False, order="newest", limit=MAX_ALERTS + 1)
    )
    handover.truncated = len(unresolved) > MAX_ALERTS
    events = await store.access.search_audit(
        AuditQuery(since=since, kinds=(ESCALATED,), limit=MAX_ESCALATIONS)
    )
    for event in reversed(events):  # oldest first
        handover.escalations.setdefault(event.event.subject, []).append(event)
    for record in unresolved[:MAX_ALERTS]:
        if _latest(record) >= since or record.alert.id in handover.escalations:
            handover.records[record.alert.id] = record
        else:
            handover.older_unresolved += 1
    for alert_id in handover.escalations:
        if alert_id in handover.records:
            continue
        found = await store.desk.get(alert_id)  # escalated, then resolved: still told
        if found is not None and not found.alert.test:
            handover.records[alert_id] = found
    return handover


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _escalation(stored: StoredAuditEvent) -> dict[str, Any]:
    event = stored.event
    said = {k: v for k in ESCALATION_FIELDS if isinstance(v := event.detail.get(k), str) and v}
    return {"at": _time(event.at), "by": event.actor, **said}


def alert_line(record: AlertRecord, escalations: list[StoredAuditEvent]) -> dict[str, Any]:
    alert = record.alert
    line: dict[str, Any] = {
        "id": alert.id,
        "rule": alert.rule.value,
        "rule_title": RULE_TITLES.get(alert.rule.value, alert.rule.value),
        "severity": alert.severity.value,
        "audience_title": AUDIENCE_TITLES.get(alert.audience.value, alert.audience.value),
        "test": " · ".join(t for t in (alert.order_text, alert.order_code) if t),
        "order": alert.order,
        "location": alert.location,
        "status": record.status,
        "count": record.repeat_count,
        "created_at": _time(record.created_at),
        "acknowledged": None,
        "resolved": None,
        "escalations": [_escalation(e) for e in escalations],
        "recommendations": [r.value for r in alert.recommendations],
    }
    if record.acknowledged_at is not None:
        line["acknowledged"] = {
            "by": record.acknowledged_by,
            "at": _time(record.acknowledged_at),
            "note": record.ack_note,
        }
    if record.resolved_at is not None:
        line["resolved"] = {
            "by": record.resolved_by,
            "at": _time(record.resolved_at),
            "resolution": record.resolution,
        }
    return line


def _patient(
    records: list[AlertRecord], escalated: dict[str, list[StoredAuditEvent]]
) -> dict[str, Any]:
    newest = max(records, key=lambda r: r.created_at).alert
    # the name and birth date the alerts carried (as the cards show them), the newest first
    named = next(
        (
            r.alert
            for r in sorted(records, key=lambda r: r.created_at, reverse=True)
            if r.alert.patient_name
        ),
        newest,
    )
    return {
        "patient_key": newest.patient_key,
        "identifiers": {
            "name": named.patient_name,
            "birth_date": named.birth_date,
            "mrn": newest.patient,
            "authority": newest.patient_authority,
        },
        "alerts": [alert_line(r, escalated.get(r.alert.id, [])) for r in records],
    }


def handover_view(
    handover: Handover, *, now: datetime, printed_by: str, default_hours: int
) -> dict[str, Any]:
    groups: dict[str, list[AlertRecord]] = {}
    for record in handover.records.values():
        groups.setdefault(record.alert.patient_key, []).append(record)
    escalated = handover.escalations

    def first(r: AlertRecord) -> tuple[bool, bool, int, float]:
        # escalated, then open, then the most severe, then the newest
        severity = SEVERITY_RANK.get(r.alert.severity.value, 9)
        return r.alert.id not in escalated, r.status != "open", severity, -r.created_at.timestamp()

    ordered = sorted(
        (sorted(records, key=first) for records in groups.values()),
        key=lambda records: (first(records[0])[:2], -max(map(_latest, records)).timestamp()),
    )
    patients = [_patient(records, escalated) for records in ordered]
    lines = [a for p in patients for a in p["alerts"]]
    return {
        "since": handover.since.isoformat(),
        "default_hours": default_hours,
        "printed_at": now.isoformat(),
        "printed_by": printed_by,
        "counts": {
            "open": sum(a["status"] == "open" for a in lines),
            "acknowledged": sum(a["status"] == "acknowledged" for a in lines),
            "escalated": sum(bool(a["escalations"]) for a in lines),
            "patients": len(patients),
        },
        "older_unresolved": handover.older_unresolved,
        "truncated": handover.truncated,
        "patients": patients,
    }
