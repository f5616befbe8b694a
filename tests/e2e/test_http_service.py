"""HTTP ingest, health, readiness and metrics over a real socket."""

from __future__ import annotations

import aiohttp

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


async def test_post_json_shows_alerts(service: Service) -> None:
    body = ADMIN + ORDER.format(cid="H3")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url(service, "/api/hl7"), data=body.encode(), headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 200
            results = await resp.json()
    assert [r["ack_code"] for r in results] == ["AA", "AA"]
    assert [a["rule"] for a in results[0]["alerts"]] == ["baseline-workup"]
    assert [a["rule"] for a in results[1]["alerts"]] == ["bb-serology"]
    assert "DTT_TREATED_REAGENT_CELLS" in results[1]["alerts"][0]["recommendations"]


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
