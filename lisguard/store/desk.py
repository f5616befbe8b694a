"""The alert desk's part of the store: review states, snoozes, collapsed repeats, the outbox.

Every store has a `desk` attribute (`DeskStore`): one SQL implementation serves SQLite and
PostgreSQL (lisguard.store.sql.desk), the memory backend has its own (memory.desk). Methods
that take a `tx` run inside the ingest transaction (the alert, its routing and its outbox rows
commit together); the others open their own transaction and append their audit event in it.

Alert statuses: `open` (in the queue), `acknowledged` (someone is on it), `resolved` (done or not
applicable), `snoozed` (held back by a snooze: stored, never delivered or queued), `collapsed` (a
repeat of an unresolved lead alert within the collapse window: the lead's count went up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from lisguard.domain.alerts import Alert
from lisguard.domain.triage import OrderedTest, QueueKey
from lisguard.store.records import AuditEvent, StoreError

STATUSES = ("open", "acknowledged", "resolved", "snoozed", "collapsed")
UNRESOLVED = ("open", "acknowledged")
RESOLUTIONS = ("done", "not-applicable")
# status an alert must be in for each desk action
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "acknowledge": ("open",),
    "resolve": ("open", "acknowledged", "snoozed"),
    "snooze": ("open", "acknowledged"),
}
OUTBOX_STATUSES = ("pending", "delivered", "failed")
SECTIONS = ("all", "queue", "background")


class AlertNotFound(StoreError):
    """No alert (or snooze) with that id."""


class TransitionRefused(StoreError):
    """The alert is not in a status the action can start from (e.g. acknowledging a resolved
    alert); the message says which status it is in and why."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A stored alert with everything the desk knows about it."""

    alert: Alert
    message_id: int
    created_at: datetime
    status: str = "open"
    lead_id: str | None = None  # collapsed: the lead it repeats
    repeat_count: int = 1  # on a lead: itself plus its collapsed repeats
    last_repeat_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    ack_note: str = ""
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None  # done | not-applicable
    resolution_reason: str = ""
    snooze_id: int | None = None


@dataclass(frozen=True, slots=True)
class Snooze:
    id: int
    patient_key: str
    rule: str
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    lifted_by: str | None = None
    lifted_at: datetime | None = None

    def active(self, at: datetime) -> bool:
        return self.lifted_at is None and self.created_at <= at < self.expires_at


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One alert to deliver on one channel; `attempts` counts this claim too."""

    id: int
    alert_id: str
    channel: str
    status: str  # pending | delivered | failed
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class AlertQuery:
    statuses: tuple[str, ...] = ()  # empty: any
    rule: str | None = None
    location: str | None = None  # PV1-3 as the alert carries it
    # Audience values (lisguard.domain.alerts.Audience), any of them; empty: any. An alert
    # stored before audiences existed has its rule's (RULE_AUDIENCE)
    audiences: tuple[str, ...] = ()
    patient: str | None = None  # patient key
    # alerts of test messages (MSH-11 T/D): None any, False production only, True test only
    test: bool | None = None
    order: str = "queue"  # queue: most severe, then newest; newest: newest first; triage
    limit: int = 200
    # -- order "triage" (lisguard.domain.triage: severity, transfusion waiting, event time)
    # which ordered tests mean a transfusion is waiting (None: none do)
    transfusion: Callable[[OrderedTest], bool] | None = None
    # only the alerts after this place in the triage order (a page cursor); keyset, so an
    # alert inserted meanwhile never shifts a later page
    after: QueueKey | None = None
    # "queue" leaves out the background (old baseline reminders, raised before
    # `background_before`), "background" is only those, "all" both
    section: str = "all"
    background_before: datetime | None = None


class DeskStore(Protocol):
    # -- inside the ingest transaction

    async def find_snooze(
        self, tx: Any, patient_key: str, rule: str, at: datetime
    ) -> Snooze | None:
        """The active snooze for this patient and rule at `at`, if any."""
        ...

    async def open_leads(
        self, tx: Any, patient_key: str, rule: str, since: datetime
    ) -> list[AlertRecord]:
        """Unresolved lead alerts of this patient and rule created at or after `since`, newest
        first (PostgreSQL: locked until the transaction ends)."""
        ...

    async def collapse(self, tx: Any, alert_id: str, lead_id: str, at: datetime) -> int:
        """Mark the alert a repeat of the lead; returns the lead's new count."""
        ...

    async def hold_back(self, tx: Any, alert_id: str, snooze_id: int) -> None:
        """Mark a new alert snoozed by that snooze."""
        ...

    async def add_outbox(
        self, tx: Any, alert_id: str, channels: Sequence[str], at: datetime
    ) -> None: ...

    # -- the technologist's actions (own transaction, audited)

    async def acknowledge(
        self, alert_id: str, *, by: str, at: datetime, note: str = ""
    ) -> AlertRecord: ...

    async def resolve(
        self, alert_id: str, *, by: str, at: datetime, resolution: str, reason: str = ""
    ) -> AlertRecord: ...

    async def snooze_alert(
        self, alert_id: str, *, by: str, at: datetime, expires_at: datetime, reason: str
    ) -> tuple[AlertRecord, Snooze]:
        """Snooze the alert's patient and rule, and the alert itself."""
        ...

    async def add_snooze(
        self,
        patient_key: str,
        rule: str,
        *,
        by: str,
        at: datetime,
        expires_at: datetime,
        reason: str,
    ) -> Snooze: ...

    async def lift_snooze(self, snooze_id: int, *, by: str, at: datetime) -> Snooze:
        """End a snooze now; AlertNotFound / TransitionRefused (already lifted or expired)."""
        ...

    # -- reads

    async def get(self, alert_id: str) -> AlertRecord | None: ...

    async def search(self, query: AlertQuery) -> list[AlertRecord]: ...

    async def count(self, query: AlertQuery) -> int:
        """How many alerts the query's filters and section match (its limit and `after` do
        not count)."""
        ...

    async def patient_counts(self, query: AlertQuery, patients: Sequence[str]) -> dict[str, int]:
        """As `count`, per patient key of `patients` (the ones a page shows): how many alerts
        each has in all pages."""
        ...

    async def repeats(self, lead_id: str) -> list[AlertRecord]:
        """The alerts collapsed into this lead, newest first."""
        ...

    async def counts(self, *, test: bool = False) -> dict[str, int]:
        """Alerts per status: of production messages, or (`test`) of test messages."""
        ...

    async def locations(self) -> list[str]:
        """Distinct non-empty locations of unresolved lead alerts (the page's filter)."""
        ...

    async def get_snooze(self, snooze_id: int) -> Snooze | None: ...

    async def list_snoozes(
        self, *, patient_key: str | None = None, active_at: datetime | None = None
    ) -> list[Snooze]:
        """Newest first; `active_at` keeps only the snoozes active then."""
        ...

    async def deliveries(self, alert_id: str) -> list[OutboxItem]: ...

    async def backlog(self) -> dict[str, tuple[int, datetime | None]]:
        """Per channel with rows not yet delivered (status pending): how many, and the
        created_at of the oldest (metrics, read at scrape time by every replica)."""
        ...

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
        """Pending rows of the channel due before `due_before` and not leased at `now`; leases
        them until `lease_until` and counts the attempt. PostgreSQL: FOR UPDATE SKIP LOCKED, so
        replicas never claim the same row."""
        ...

    async def record(
        self,
        item: OutboxItem,
        *,
        outcome: str,
        at: datetime,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """outcome delivered | retry (pending again at next_attempt_at) | failed (given up).
        Only a pending row changes (a late worker cannot undo a delivery); delivered and failed
        append an audit event. Returns whether the row changed."""
        ...


# ---------------------------------------------------------------- shared by the implementations


def refuse_unless(record: AlertRecord, action: str) -> None:
    """TransitionRefused unless the alert's status lets `action` start."""
    if record.status in ALLOWED_FROM[action]:
        return
    if record.status == "collapsed":
        why = f"it repeats alert {record.lead_id}: {action} that one"
    elif record.status == "acknowledged":
        why = f"it was acknowledged by {record.acknowledged_by}"
    elif record.status == "resolved":
        why = f"it was resolved ({record.resolution}) by {record.resolved_by}"
    else:
        why = f"it is {record.status}"
    raise TransitionRefused(f"cannot {action} alert {record.alert.id}: {why}")


def refuse_lift(snooze: Snooze, at: datetime) -> None:
    if snooze.lifted_at is not None:
        raise TransitionRefused(f"snooze {snooze.id} was already lifted by {snooze.lifted_by}")
    if snooze.expires_at <= at:
        raise TransitionRefused(f"snooze {snooze.id} has already expired")


def review_event(
    kind: str, record: AlertRecord, by: str, at: datetime, **detail: Any
) -> AuditEvent:
    a = record.alert
    return AuditEvent(
        kind, at, by, a.id, {"rule": a.rule.value, "patient": a.patient_key, **detail}
    )


def snooze_event(kind: str, snooze: Snooze, by: str, at: datetime) -> AuditEvent:
    detail = {
        "snooze": snooze.id,
        "rule": snooze.rule,
        "patient": snooze.patient_key,
        "reason": snooze.reason,
        "expires_at": snooze.expires_at.isoformat(),
    }
    return AuditEvent(kind, at, by, f"snooze:{snooze.id}", detail)


def delivery_event(item: OutboxItem, outcome: str, at: datetime, error: str) -> AuditEvent | None:
    if outcome == "delivered":
        detail = {"channel": item.channel, "attempts": item.attempts}
        return AuditEvent("alert.delivered", at, "system", item.alert_id, detail)
    if outcome == "failed":
        detail = {"channel": item.channel, "attempts": item.attempts, "error": error}
        return AuditEvent("alert.delivery_failed", at, "system", item.alert_id, detail)
    return None
