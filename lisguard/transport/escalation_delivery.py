"""Escalations on the delivery channels a site names in `escalation.channels`.

Each is the site's webhook or HL7 receiver again, as an outbox channel of its own
(`escalation.webhook`, `escalation.hl7`: lisguard.alerting.escalation), so the escalation is
queued, retried and delivered once like the first delivery, and neither blocks the other. What
it sends is the alert's usual delivery, marked:

- webhook: the usual JSON body plus `"escalated": true`, `escalated_at`, `open_minutes` (how
  long the alert had been open when it escalated) and `escalation_after_minutes` (the site's
  limit). Its `Idempotency-Key` and `webhook-id` are `<alert id>-escalation`: a receiver that
  de-duplicates on the alert id would otherwise drop the escalation as a resend;
- HL7: the usual ORU^R01 with MSH-10 `E` + the alert id's first 19 characters (its own control
  id, for the same reason; the ACK must echo it), and two more OBX at the end: `LGESCALATED`
  (TS, when it escalated) and `LGOPENMIN` (NM, minutes open by then, unit `min`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from lisguard.alerting.escalation import escalation_channel
from lisguard.alerting.outbox import Attempt, Channel
from lisguard.alerting.routing import ChannelRoute
from lisguard.domain.alerts import Alert
from lisguard.hl7v2.outbound import CODE_SYSTEM, alert_oru
from lisguard.settings import EscalationSettings, Hl7OutboundSettings, WebhookSettings
from lisguard.store.base import Store
from lisguard.store.desk import AlertRecord
from lisguard.store.escalation import Escalation
from lisguard.transport.hl7_outbound import Hl7Channel
from lisguard.transport.webhook import (
    WebhookChannel,
    payload,
)

NOT_RECORDED = "no escalation recorded for this alert"


def escalation_id(alert: Alert) -> str:
    """The webhook's Idempotency-Key / webhook-id of an alert's escalation."""
    return f"{alert.id}-escalation"


def escalated_control_id(alert: Alert) -> str:
    """MSH-10 of the escalation ORU (ST, at most 20 characters), not the first delivery's."""
    return "E" + alert.id[:19]


def escalated_body(
    record: AlertRecord, escalation: Escalation, public_url: str, after_minutes: float
) -> bytes:
    body = {
        **payload(record, public_url),
        "escalated": True,
        "escalated_at": escalation.escalated_at.isoformat(),
        "open_minutes": escalation.open_minutes,
        "escalation_after_minutes": after_minutes,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def escalated_oru(oru: str, alert: Alert, escalation: Escalation) -> str:
    """The alert's ORU (ER7) as an escalation: own MSH-10, the two escalation OBX appended."""
    segments = [s for s in oru.split("\r") if s]
    msh = segments[0].split("|")
    msh[9] = escalated_control_id(alert)  # fields[0] is "MSH", so MSH-n is fields[n - 1]
    segments[0] = "|".join(msh)
    at = escalation.escalated_at.strftime("%Y%m%d%H%M%S+0000")
    n = sum(1 for s in segments if s.startswith("OBX|"))
    segments += [
        f"OBX|{n + 1}|TS|LGESCALATED^Escalated: HIGH alert left open^{CODE_SYSTEM}|1|{at}||||||F",
        f"OBX|{n + 2}|NM|LGOPENMIN^Minutes open when escalated^{CODE_SYSTEM}|1"
        f"|{escalation.open_minutes:g}|min^minutes^UCUM|||||F",
    ]
    return "\r".join(segments) + "\r"


class EscalatedWebhook(WebhookChannel):
    name = escalation_channel("webhook")

    def __init__(
        self,
        settings: WebhookSettings,
        public_url: str,
        store: Store,
        after_minutes: float,
    ) -> None:
        super().__init__(settings, public_url)
        self.accepts_test = False  # test alerts never escalate
        self.store = store
        self.after_minutes = after_minutes

    async def deliver(self, record: AlertRecord) -> Attempt:
        escalation = await self.store.escalations.get(record.alert.id)
        if escalation is None:
            return Attempt(False, permanent=True, detail=NOT_RECORDED)
        body = escalated_body(record, escalation, self.public_url, self.after_minutes)
        return await self.post(body, escalation_id(record.alert))


class EscalatedHl7(Hl7Channel):
    name = escalation_channel("hl7")

    def __init__(self, settings: Hl7OutboundSettings, store: Store) -> None:
        super().__init__(settings)
        self.accepts_test = False
        self.store = store

    def _message(self, record: AlertRecord, escalation: Escalation) -> str:
        s = self.settings
        oru = alert_oru(
            record.alert,
            record.created_at,
            sending_facility=s.sending_facility,
            receiving_application=s.receiving_application,
            receiving_facility=s.receiving_facility,
        )
        return escalated_oru(oru, record.alert, escalation)

    async def deliver(self, record: AlertRecord) -> Attempt:
        escalation = await self.store.escalations.get(record.alert.id)
        if escalation is None:
            return Attempt(False, permanent=True, detail=NOT_RECORDED)
        message = await asyncio.to_thread(self._message, record, escalation)  # hl7apy: slow
        return await self.send(message, escalated_control_id(record.alert))


def escalation_channels(
    store: Store,
    escalation: EscalationSettings,
    webhook: WebhookSettings,
    hl7: Hl7OutboundSettings,
    public_url: str,
) -> list[tuple[Channel, ChannelRoute]]:
    """The escalation channels `escalation.channels` names, each with the alerts it takes
    (its own audiences and locations); none when escalation is off."""
    if not escalation.enabled:
        return []
    makers: dict[str, Callable[[], Channel]] = {
        "webhook": lambda: EscalatedWebhook(webhook, public_url, store, escalation.after_minutes),
        "hl7": lambda: EscalatedHl7(hl7, store),
    }
    found: list[tuple[Channel, ChannelRoute]] = []
    for route in escalation.channels:
        channel = makers[route.channel]()
        found.append(
            (
                channel,
                ChannelRoute(
                    channel.name,
                    audiences=frozenset(route.audiences),
                    locations=frozenset(route.locations),
                ),
            )
        )
    return found
