"""What happens to a new alert inside the ingest transaction, before the ACK is sent.

1. A snooze is active for its patient and rule: the alert is stored with status `snoozed`;
   it is audited, never queued or delivered.
2. An unresolved lead alert of the same patient and rule with the same recommendations was
   raised within the collapse window: the alert is stored with status `collapsed`, linked to
   that lead, whose count goes up. The queue and the delivery channels show only leads, so a
   patient whose type & screen is ordered four times a day raises one alert "x4", not four.
3. Otherwise it is a lead: one outbox row per enabled delivery channel that admits it
   (`ChannelRoute.admits`), in the same transaction, so a crash or a down receiver cannot lose
   the delivery. A lead no channel admits is still stored and queued: the page shows it.

A channel may be restricted to some audiences (`Alert.audience`: the clinic's receiver takes
clinic prompts, the bench's pager blood bank alerts) and to some locations (the alert's PV1-3
point of care, compared after strip and case-insensitively; an alert without a location goes
only to channels without a location list). Empty means every audience / every location.

An alert of a test message (MSH-11 T/D, `alert.test`) gets outbox rows only on the channels a
site marked as taking test alerts (`ChannelRoute.test_alerts`), and collapses only into a test
lead of the same processing id: a real alert never disappears into a test one, nor the reverse.

The collapse window is measured from the lead's creation, not slid by each repeat: a patient who
keeps being tested is re-alerted at least once per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lisguard.domain.alerts import Alert, Audience
from lisguard.store.base import AuditEvent
from lisguard.store.desk import DeskStore

DEFAULT_COLLAPSE_WINDOW = timedelta(hours=12)


def same_location(location: str) -> str:
    """A location as a channel's list is compared with it: stripped, case-folded."""
    return location.strip().casefold()


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """One outbox channel and the lead alerts it takes."""

    name: str  # outbox channel: "webhook", "hl7"
    audiences: frozenset[Audience] = frozenset()  # empty: every audience
    # PV1-3 points of care (kept as same_location gives them); empty: every location
    locations: frozenset[str] = frozenset()
    test_alerts: bool = False  # also alerts of test messages (MSH-11 T/D)

    def __post_init__(self) -> None:  # any iterables in; audiences may be given as values
        audiences = frozenset(Audience(a) for a in self.audiences)
        locations = frozenset(same_location(x) for x in self.locations) - {""}
        object.__setattr__(self, "audiences", audiences)
        object.__setattr__(self, "locations", locations)

    def admits(self, alert: Alert) -> bool:
        if alert.test and not self.test_alerts:
            return False  # never to a production receiver: it would act on it as real
        if self.audiences and alert.audience not in self.audiences:
            return False
        return not self.locations or same_location(alert.location) in self.locations


@dataclass(frozen=True)
class AlertRouting:
    # outbox channels a lead alert may get a row on, each with what it admits
    channels: tuple[ChannelRoute, ...] = ()
    collapse_window: timedelta = DEFAULT_COLLAPSE_WINDOW  # zero: never collapse

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def channels_for(self, alert: Alert) -> tuple[str, ...]:
        """The channels whose restriction admits this (lead) alert."""
        return tuple(c.name for c in self.channels if c.admits(alert))

    async def route(
        self, desk: DeskStore, tx: Any, alerts: Sequence[Alert], now: datetime
    ) -> list[AuditEvent]:
        """Snooze, collapse or queue each new alert; returns the audit events to append."""
        events: list[AuditEvent] = []
        # the message's alerts are all stored before the first is routed: one not yet routed
        # is no lead (else the first would fold into the second, the second into the third)
        unrouted = {a.id for a in alerts}
        for alert in alerts:
            unrouted.discard(alert.id)
            rule = alert.rule.value
            snooze = await desk.find_snooze(tx, alert.patient_key, rule, now)
            if snooze is not None:
                await desk.hold_back(tx, alert.id, snooze.id)
                detail = {"rule": rule, "patient": alert.patient_key, "snooze": snooze.id}
                events.append(AuditEvent("alert.snoozed", now, subject=alert.id, detail=detail))
                continue
            lead = await self._lead(desk, tx, alert, now, unrouted)
            if lead is not None:
                count = await desk.collapse(tx, alert.id, lead, now)
                detail = {"rule": rule, "patient": alert.patient_key, "lead": lead, "count": count}
                events.append(AuditEvent("alert.collapsed", now, subject=alert.id, detail=detail))
                continue
            channels = self.channels_for(alert)
            if channels:
                await desk.add_outbox(tx, alert.id, channels, now)
        return events

    async def _lead(
        self, desk: DeskStore, tx: Any, alert: Alert, now: datetime, unrouted: set[str]
    ) -> str | None:
        if self.collapse_window <= timedelta(0):
            return None
        since = now - self.collapse_window
        wanted = sorted(alert.recommendations)
        for lead in await desk.open_leads(tx, alert.patient_key, alert.rule.value, since):
            if (
                lead.alert.id != alert.id
                and lead.alert.id not in unrouted
                and lead.alert.processing_id == alert.processing_id
                and sorted(lead.alert.recommendations) == wanted
            ):
                return lead.alert.id
        return None
