"""HL7 delivery: the alert as an ORU^R01 over MLLP to the site's receiver, waiting for its ACK.

AA or CA (MSA-2 echoing our MSH-10) is delivered. AE/CE and AR/CR follow the site's policy
(`delivery.hl7.on_ae`, `on_ar`: retry or fail). No ACK in time, a refused or dropped connection,
or an ACK for another message is retried on a fresh connection. Alerts of test messages are
sent only with `delivery.hl7.test_alerts`, and then with their own MSH-11 (T or D).
"""

from __future__ import annotations

import asyncio
import contextlib

from lisguard.alerting.outbox import Attempt
from lisguard.hl7v2.outbound import alert_oru, control_id
from lisguard.hl7v2.reader import HL7ReadError, parse
from lisguard.settings import Hl7OutboundSettings
from lisguard.store.desk import AlertRecord
from lisguard.transport.mllp import MllpClient

ACCEPTED = frozenset({"AA", "CA"})


class Hl7Channel:
    name = "hl7"

    def __init__(self, settings: Hl7OutboundSettings) -> None:
        if not settings.host or not settings.port:
            raise ValueError("delivery.hl7 needs host and port")
        self.settings = settings
        self.accepts_test = settings.test_alerts  # such an ORU says MSH-11 T (or D)
        self._client: MllpClient | None = None

    async def deliver(self, record: AlertRecord) -> Attempt:
        s = self.settings
        # hl7apy takes ~20 ms per message: built in a thread, the MLLP listener keeps its pace
        message = await asyncio.to_thread(
            alert_oru,
            record.alert,
            record.created_at,
            sending_facility=s.sending_facility,
            receiving_application=s.receiving_application,
            receiving_facility=s.receiving_facility,
        )
        return await self.send(message, control_id(record.alert))

    async def send(self, message: str, sent_id: str) -> Attempt:
        """Send one ORU on the kept connection and judge its ACK (MSA-2 must be `sent_id`)."""
        s = self.settings
        try:
            if self._client is None:
                client = MllpClient(s.host, s.port, timeout=s.ack_timeout_seconds)
                await client.__aenter__()
                self._client = client
            ack = await self._client.send(message.encode())
        except (OSError, TimeoutError, ConnectionError) as exc:
            await self.close()  # the connection's state is unknown: start afresh
            return Attempt(False, detail=f"{type(exc).__name__}: {exc}"[:300])
        return self._judge(ack, sent_id)

    def _judge(self, ack: str, sent_id: str) -> Attempt:
        try:
            msa = next(seg for seg in parse(ack).segments if seg.name == "MSA")
        except (HL7ReadError, StopIteration):
            return Attempt(False, detail="the reply is not an ACK with an MSA segment")
        code, echoed, text = msa.get(1).strip().upper(), msa.get(2).strip(), msa.get(3).strip()
        if echoed != sent_id:
            return Attempt(False, detail=f"ACK {code} is for message {echoed!r}, not {sent_id!r}")
        detail = f"{code} {text}".strip()[:300]
        if code in ACCEPTED:
            return Attempt(True, detail=detail)
        policy = self.settings.on_ae if code in ("AE", "CE") else self.settings.on_ar
        return Attempt(False, permanent=policy == "fail", detail=detail)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
