"""What happens to a new alert inside the ingest transaction, before the ACK is sent.

1. A snooze is active for its patient and rule: the alert is stored with status `snoozed`;
   it is audited, never queued or delivered.
2. An unresolved lead alert of the same patient and rule with the same recommendations was
   raised within the collapse window: the alert is stored with status `collapsed`, linked to
   that lead, whose count goes up. The queue and the delivery channels show only leads, so a
   patient whose type & screen is ordered four times a day raises one alert "x4", not four.
3. Otherwise it is a lead: one outbox row per enabled delivery channel, in the same
   transaction, so a crash or a down receiver cannot lose the delivery.

An alert of a test message (MSH-11 T/D, `alert.test`) gets outbox rows only on the channels a
site marked as taking test alerts (`test_channels`), and collapses only into a test lead of
the same processing id: a real alert never disappears into a test one, nor the reverse.

The collapse window is measured from the lead's creation, not slid by each repeat: a patient who
keeps being tested is re-alerted at least once per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lisguard.domain.alerts import Alert
from lisguard.store.base import AuditEvent
from lisguard.store.desk import DeskStore

DEFAULT_COLLAPSE_WINDOW = timedelta(hours=12)


@dataclass(frozen=True)
class AlertRouting:
    channels: tuple[str, ...] = ()  # outbox channels to fill for each lead alert
    collapse_window: timedelta = DEFAULT_COLLAPSE_WINDOW  # zero: never collapse
    test_channels: tuple[str, ...] = ()  # of `channels`, those that also take test alerts

    async def route(
        self, desk: DeskStore, tx: Any, alerts: Sequence[Alert], now: datetime
    ) -> list[AuditEvent]:
        """Snooze, collapse or queue each new alert; returns the audit events to append."""
        events: list[AuditEvent] = []
        for alert in alerts:
            rule = alert.rule.value
            snooze = await desk.find_snooze(tx, alert.patient_key, rule, now)
            if snooze is not None:
                await desk.hold_back(tx, alert.id, snooze.id)
                detail = {"rule": rule, "patient": alert.patient_key, "snooze": snooze.id}
                events.append(AuditEvent("alert.snoozed", now, subject=alert.id, detail=detail))
                continue
            lead = await self._lead(desk, tx, alert, now)
            if lead is not None:
                count = await desk.collapse(tx, alert.id, lead, now)
                detail = {"rule": rule, "patient": alert.patient_key, "lead": lead, "count": count}
                events.append(AuditEvent("alert.collapsed", now, subject=alert.id, detail=detail))
                continue
            channels = self.channels
            if alert.test:  # never to a production receiver: it would act on it as real
                channels = tuple(c for c in channels if c in self.test_channels)
            if channels:
                await desk.add_outbox(tx, alert.id, channels, now)
        return events

    async def _lead(self, desk: DeskStore, tx: Any, alert: Alert, now: datetime) -> str | None:
        if self.collapse_window <= timedelta(0):
            return None
        since = now - self.collapse_window
        wanted = sorted(alert.recommendations)
        for lead in await desk.open_leads(tx, alert.patient_key, alert.rule.value, since):
            if (
                lead.alert.id != alert.id
                and lead.alert.processing_id == alert.processing_id
                and sorted(lead.alert.recommendations) == wanted
            ):
                return lead.alert.id
        return None
