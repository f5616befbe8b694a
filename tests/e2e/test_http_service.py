"""HTTP ingest, health, readiness and metrics over a real socket."""

from __future__ import annotations

import json

import aiohttp
import hl7

from lisguard.app import Service

ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN77^^^HOSP^MR||TEST^PATIENT\r"
    "ORC|NW|ORD-{cid}\r"
    "OBR|1|ORD-{cid}||890-4^Antibody screen^LN|||20260302081000\r"
)
ADMIN = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301100000||RAS^O17|RX77|P|2.5.1\r"
    "PID|1||MRN77^^^HOSP^MR||TEST^PATIENT\r"
    "ORC|RE|RXO77\r"
    "RXA|0|1|20260301093000||J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)


def url(service: Service, path: str) -> str:
    return f"http://127.0.0.1:{service.http_port}{path}"


async def test_post_batch_returns_acks_in_order(service: Service) -> None:
    body = (ORDER.format(cid="H1") + "\n" + ORDER.format(cid="H2")).replace("\r", "\r\n")
    async with aiohttp.ClientSession() as http:
        async with http.post(url(service, "/api/hl7"), data=body.encode()) as resp:
            assert resp.status == 200
            text = await resp.text()
    msas = [s for s in text.split("\r") if s.startswith("MSA")]
    assert msas == ["MSA|AA|H1", "MSA|AA|H2"]


async def test_post_json_names_alerts_by_id_only(service: Service) -> None:
    body = ADMIN + ORDER.format(cid="H3")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url(service, "/api/hl7"), data=body.encode(), headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 200
            text = await resp.text()
        results = json.loads(text)
        assert [r["ack_code"] for r in results] == ["AA", "AA"]
        assert [r["alert_count"] for r in results] == [1, 1]
        assert all("alerts" not in r for r in results)
        # the sender gets ids to follow up, never the alert text (patient data, from other feeds)
        rules = []
        for result in results:
            [alert_id] = result["alert_ids"]
            async with http.get(url(service, f"/api/alerts/{alert_id}")) as resp:
                view = (await resp.json())["alert"]
            rules.append(view["rule"])
            assert view["text"] not in text and "MRN77" not in text
    assert rules == ["baseline-workup", "bb-serology"]


async def test_empty_body_is_a_clear_400(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(url(service, "/api/hl7"), data=b"") as resp:
            assert resp.status == 400
            assert "empty body" in (await resp.json())["error"]


async def test_health_ready_metrics(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(url(service, "/healthz")) as resp:
            assert resp.status == 200
        async with http.get(url(service, "/readyz")) as resp:
            assert resp.status == 200
        async with http.post(url(service, "/api/hl7"), data=ADMIN.encode()) as resp:
            assert resp.status == 200
        async with http.get(url(service, "/metrics")) as resp:
            text = await resp.text()
    assert 'lisguard_messages_total{outcome="accepted",transport="http",type="RAS^O17"} 1.0' in text
    assert 'lisguard_alerts_total{rule="baseline-workup"} 1.0' in text
    assert "lisguard_ack_latency_seconds_bucket" in text
    assert "lisguard_store_latency_seconds_count" in text


async def test_unknown_route_is_json_404(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(url(service, "/nope")) as resp:
            assert resp.status == 404
            assert (await resp.json())["status"] == 404


BATCH = (
    "FHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||HFILE1\r"
    "BHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||HBATCH1\r"
    + ORDER.format(cid="HB1")
    + "MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01|HB2|P|2.8\rPID|1\rthis is not a segment\r"
    + "BTS|{count}\r"
    "FTS|1\r"
)


async def test_post_batch_gets_the_batch_ack(service: Service) -> None:
    """A batch body is answered by a batch of ACKs (HL7 v2 ch. 2 batch protocol); it used to
    get the messages' ACKs one after another, with no batch ACK."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url(service, "/api/hl7"), data=BATCH.format(count=2)) as resp:
            assert resp.status == 200
            assert resp.charset == "utf-8"
            text = await resp.text()
    parsed = hl7.parse_file(text)
    assert str(parsed.header[12]) == "HFILE1"
    [sub] = list(parsed)
    assert str(sub.header[12]) == "HBATCH1"
    assert [(str(m.segment("MSA")[1]), str(m.segment("MSA")[2])) for m in sub] == [
        ("AA", "HB1"),
        ("AE", "HB2"),
    ]
    # the second ACK is a v2.8 one: no MSA-3, no ERR-1, the reason in ERR-8
    second = list(sub)[1]
    assert len(second.segment("MSA")) == 3 and str(second.segment("ERR")[1]) == ""
    assert str(second.segment("ERR")[8])
    assert str(sub.trailer[1]) == "2" and str(parsed.trailer[1]) == "1"
    assert await service.store.count_messages() == 2


async def test_post_batch_json_has_each_message_and_the_batch_ack(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url(service, "/api/hl7"),
            data=BATCH.format(count=7),
            headers={"Accept": "application/json"},
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert [m["control_id"] for m in body["messages"]] == ["HB1", "HB2"]
    assert [m["ack_code"] for m in body["messages"]] == ["AA", "AE"]
    assert [m["outcome"] for m in body["messages"]] == ["accepted", "error"]
    assert body["envelope_problems"] == ["BTS-1 says 7 messages, 2 received"]
    [sub] = list(hl7.parse_file(body["batch_ack"]))
    assert str(sub.trailer[2]) == "envelope error: BTS-1 says 7 messages, 2 received"


async def test_post_latin1_gets_latin1(service: Service) -> None:
    text = (
        ORDER.format(cid="ÄH1").replace("|HOSP|", "|KLINIKUM MÜNCHEN|", 1)
        .replace("|P|2.5.1\r", "|P|2.5.1||||||8859/1\r", 1)
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.post(url(service, "/api/hl7"), data=text.encode("latin-1")) as resp:
            assert resp.status == 200
            assert resp.charset == "iso-8859-1"
            raw = await resp.read()
    ack = hl7.parse(raw.decode("latin-1"))
    assert str(ack.segment("MSA")[2]) == "ÄH1"
    assert str(ack.segment("MSH")[6]) == "KLINIKUM MÜNCHEN"
    assert str(ack.segment("MSH")[18]) == "8859/1"
