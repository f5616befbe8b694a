"""Delivery channels restricted by audience and location, end to end: the service's webhook,
restricted to the clinic, gets the clinic's IVIG-prophylaxis prompt and not the blood bank's
alerts; its HL7 channel, restricted to one ward, gets only that ward's alert; an alert no channel
takes is still on the queue. Real MLLP in, real receivers on 127.0.0.1 out."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import hl7

from lisguard.app import Service
from lisguard.transport.mllp import MllpClient
from tests.e2e.receivers import MllpReceiver, WebhookReceiver
from tests.e2e.test_delivery import DOSE, SCREEN, delivery_settings, start_service, until

# a BCMA bispecific ordered with no immunoglobulin given: ivig-prophylaxis, for the clinic
BISPECIFIC = (
    "MSH|^~\\&|EPIC|HOSP|LISGUARD|HOSP|20260302090000||RDE^O11^RDE_O11|TEC-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||ROE^RICHARD\r"
    "PV1|1|O|MYELOMA^^^HOSP\r"
    "ORC|NW|TEC-{mrn}|||||||20260302085900\r"
    "TQ1|1||||||20260309080000\r"
    "RXE||57894-0449-01^TECVAYLI 30 MG/3 ML SC SOLN^NDC|0.06||mg/kg^milligram per kilogram^UCUM\r"
    "RXR|SC^Subcutaneous^HL70162\r"
)


async def send(service: Service, *texts: str) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in texts:
            ack = await client.send(text.encode())
            assert "MSA|AA|" in ack, ack


async def test_channels_take_only_their_audience_and_location(tmp_path: Path) -> None:
    webhook = WebhookReceiver()
    oru = MllpReceiver()
    await webhook.start()
    await oru.start()
    delivery = delivery_settings("webhook", webhook.port, audiences=["clinic"])
    delivery["hl7"] = delivery_settings("hl7", oru.port, locations=[" 4w "])["hl7"]
    service = await start_service(tmp_path, delivery)
    try:
        await send(service, DOSE.format(mrn="MRN900"), SCREEN.format(mrn="MRN900"))
        await send(service, BISPECIFIC.format(mrn="MRN901"))
        by_rule = {
            s.alert.rule.value: s.alert
            for mrn in ("MRN900", "MRN901")
            for s in await service.store.list_alerts(patient=f"{mrn}^HOSP")
        }
        assert set(by_rule) == {"baseline-workup", "bb-serology", "ivig-prophylaxis"}
        clinic = by_rule["ivig-prophylaxis"]
        bench = by_rule["bb-serology"]  # PV1-3 4W^12^B: location 4W
        unrouted = by_rule["baseline-workup"]  # blood bank, at INFUS: no channel takes it
        assert (clinic.audience, bench.audience, unrouted.audience) == (
            "clinic",
            "blood_bank",
            "blood_bank",
        )

        async def delivered() -> bool:
            return len(webhook.received) >= 1 and len(oru.received) >= 1

        await until(delivered)
        # rows were written with the alerts (before the ACK): what each channel will ever get
        assert [d.channel for d in await service.store.desk.deliveries(clinic.id)] == ["webhook"]
        assert [d.channel for d in await service.store.desk.deliveries(bench.id)] == ["hl7"]
        assert await service.store.desk.deliveries(unrouted.id) == []

        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{service.http_port}"
            async with session.get(f"{base}/api/alerts?audience=blood_bank") as resp:
                queue = await resp.json()
        # the alert no channel took is still on the page's queue
        assert {v["id"] for v in queue["alerts"]} == {bench.id, unrouted.id}
    finally:
        await service.stop()  # workers end (after one last flush): nothing more is sent
        await webhook.stop()
        await oru.stop()

    [post] = webhook.received
    body = json.loads(post.body)
    assert (body["id"], body["rule"], body["audience"]) == (clinic.id, "ivig-prophylaxis", "clinic")
    [text] = oru.received
    message = hl7.parse(text)
    assert str(message.segment("MSH")[10]) == bench.id[:20]
    assert str(message.segment("PV1")[3]).startswith("4W")
    audience = [str(obx[5]) for obx in message.segments("OBX") if "LGAUDIENCE" in str(obx[3])]
    assert audience == ["blood_bank"]  # the ORU says who acts on it too
