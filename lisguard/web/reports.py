"""The manager's daily summary, counted from the audit log.

Per day: messages received by ACK code (AA, AE, AR...), alerts raised by rule, and how long an
alert waited for a technologist: minutes from `alert.raised` to the first `alert.acknowledged`
of the same alert (subject = alert id), as median and 90th percentile. Alerts of test messages
(MSH-11 T/D) are left out; their messages are counted. The log is the one record
that holds all three and that an inspector can verify, so the report needs no other table.

An acknowledgement counts on the day its alert was raised (a Friday-night alert acknowledged on
Saturday is Friday's wait). Days are calendar days in the requested time zone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import MESSAGE_RECEIVED, Store, StoredAuditEvent

PAGE = 2000
MAX_DAYS = 366
RECEIVED = MESSAGE_RECEIVED
RAISED = "alert.raised"
ACKNOWLEDGED = "alert.acknowledged"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (q in 0..1); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def _minutes(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Tally:
    messages: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)  # minutes from raised to acknowledged

    def add(self, other: Tally) -> None:
        self.messages.update(other.messages)
        self.alerts.update(other.alerts)
        self.waits.extend(other.waits)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": dict(sorted(self.messages.items())),
            "messages_total": sum(self.messages.values()),
            "alerts": dict(sorted(self.alerts.items())),
            "alerts_total": sum(self.alerts.values()),
            "acknowledged": len(self.waits),
            "ack_minutes": {
                "median": _minutes(percentile(self.waits, 0.5)),
                "p90": _minutes(percentile(self.waits, 0.9)),
            },
        }


async def audit_pages(store: Store, query: AuditQuery) -> AsyncIterator[StoredAuditEvent]:
    """Every event the query matches, newest first, a page at a time."""
    query = replace(query, limit=PAGE)
    while True:
        page = await store.access.search_audit(query)
        for row in page:
            yield row
        if len(page) < PAGE:
            return
        query = replace(query, before_seq=page[-1].seq)


def day_bounds(first: date, last: date, zone: tzinfo | None) -> tuple[datetime, datetime]:
    """UTC instants of the start of `first` and the end of `last` in that zone."""
    tz = zone or UTC
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end


async def daily_report(
    store: Store, first: date, last: date, zone: tzinfo | None = None
) -> dict[str, Any]:
    if last < first:
        raise ValueError("from must not be after to")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days per report")
    tz = zone or UTC
    since, until = day_bounds(first, last, zone)
    days = {first + timedelta(days=i): Tally() for i in range((last - first).days + 1)}
    raised: dict[str, tuple[date, datetime]] = {}
    counted = AuditQuery(since=since, until=until, kinds=(RECEIVED, RAISED))
    async for row in audit_pages(store, counted):
        e = row.event
        tally = days.get(e.at.astimezone(tz).date())
        if tally is None:
            continue
        if e.kind == RECEIVED:
            tally.messages[str(e.detail.get("outcome") or "unknown")] += 1
        elif e.detail.get("processing_id", "P") != "P":
            continue  # an alert of a test message (MSH-11 T/D): not the bench's workload
        else:
            tally.alerts[str(e.detail.get("rule") or "unknown")] += 1
            # pages run newest first: the last one seen is the first raise of that alert id
            raised[e.subject] = (e.at.astimezone(tz).date(), e.at)
    first_ack: dict[str, datetime] = {}
    # an alert raised in the range may be acknowledged after it: no upper bound here
    async for row in audit_pages(store, AuditQuery(since=since, kinds=(ACKNOWLEDGED,))):
        if row.event.subject in raised:
            first_ack[row.event.subject] = row.event.at
    for alert_id, acked_at in first_ack.items():
        day, raised_at = raised[alert_id]
        wait = (acked_at - raised_at).total_seconds() / 60
        days[day].waits.append(max(0.0, wait))
    total = Tally()
    for tally in days.values():
        total.add(tally)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "tz": str(zone) if zone else "UTC",
        "outcomes": sorted(total.messages),
        "rules": sorted(total.alerts),
        "days": [{"date": d.isoformat(), **t.to_json()} for d, t in days.items()],
        "totals": total.to_json(),
    }
