"""The alert API over real HTTP against the running service: every route, its errors, the live
event stream, the acting user, and an OpenAPI document that matches the routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.web import auth
from tests.conftest import ServiceFactory

SAFETY = 20.0  # never an assertion: a hung test fails instead of blocking the suite

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|SCR-{order}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|{location}\r"
    "ORC|NW|{order}\r"
    "OBR|1|{order}||890-4^Antibody screen^LN|||20260302081000\r"
)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        if data is not None and path != "/api/hl7":  # the API reads JSON bodies only as such
            kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
        async with self.session.request(method, self.base + path, data=data, **kw) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def hl7(self, *messages: str) -> list[dict[str, Any]]:
        status, results = await self.call(
            "POST",
            "/api/hl7",
            raw="".join(messages).encode(),
            headers={"Accept": "application/json"},
        )
        assert status == 200
        return list(results)


@pytest.fixture
async def client(service: Service) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{service.http_port}")


async def screened(api: Api, mrn: str = "MRN100", order: str = "TS1", location: str = "4W") -> str:
    """A daratumumab dose then an antibody screen: returns the bb-serology alert's id."""
    results = await api.hl7(
        DOSE.format(mrn=mrn), SCREEN.format(mrn=mrn, order=order, location=location)
    )
    return await alert_of_rule(api, results[1], "bb-serology")


async def alert_of_rule(api: Api, result: dict[str, Any], rule: str, **kw: Any) -> str:
    """The id of the alert of `rule` a message raised: the HL7 answer names alerts by id only."""
    assert result["alert_count"] == len(result["alert_ids"])
    for alert_id in result["alert_ids"]:
        status, view = await api.call("GET", f"/api/alerts/{alert_id}", **kw)
        assert status == 200
        if view["alert"]["rule"] == rule:
            return str(alert_id)
    raise AssertionError(f"no {rule} alert in {result}")


# ---------------------------------------------------------------- queue


async def test_list_filters_and_orders_the_queue(client: Api) -> None:
    first = await screened(client, "MRN100", "TS1", "4W")
    second = await screened(client, "MRN101", "TS2", "ONC")
    status, body = await client.call("GET", "/api/alerts?rule=bb-serology")
    assert status == 200 and [a["id"] for a in body["alerts"]] == [second, first]
    view = body["alerts"][1]
    assert view["alert"]["patient"] == "MRN100" and view["status"] == "open"
    assert view["meanings"]["DTT_TREATED_REAGENT_CELLS"].startswith("Use 0.2 M DTT")
    assert view["links"]["patient"] == "/api/patients/MRN100%5EHOSP"

    _, body = await client.call("GET", "/api/alerts?location=ONC")
    assert [a["id"] for a in body["alerts"]] == [second]
    _, body = await client.call("GET", "/api/alerts?patient=MRN100%5EHOSP&rule=bb-serology")
    assert [a["id"] for a in body["alerts"]] == [first]
    _, body = await client.call("GET", "/api/alerts?limit=1")
    assert body["count"] == 1
    _, body = await client.call("GET", "/api/alerts?status=resolved")
    assert body["alerts"] == []
    _, body = await client.call("GET", "/api/alerts?status=all&rule=baseline-workup")
    assert body["count"] == 2  # one per first dose


@pytest.mark.parametrize(
    "query",
    ["status=gone", "status=,", "rule=no-such-rule", "limit=ten", "limit=0", "limit=501"],
)
async def test_bad_queue_parameters_are_400(client: Api, query: str) -> None:
    status, body = await client.call("GET", f"/api/alerts?{query}")
    assert status == 400 and body["status"] == 400 and body["error"]


@pytest.mark.parametrize(
    "path", ["/api/alerts?patient=M%00X", "/api/alerts?rule%00=x", "/api/patients/M%00X"]
)
async def test_nul_in_a_request_is_400(client: Api, path: str) -> None:
    status, body = await client.call("GET", path)
    assert (status, body["status"]) == (400, 400)


async def test_nul_in_a_body_is_400(client: Api) -> None:
    alert = await screened(client)
    status, _ = await client.call(
        "POST", f"/api/alerts/{alert}/acknowledge", raw=b'{"note": "a\\u0000b"}'
    )
    assert status == 400


async def test_get_one_alert_with_its_repeats(client: Api) -> None:
    lead = await screened(client, "MRN102", "TS1")
    results = await client.hl7(SCREEN.format(mrn="MRN102", order="TS2", location="4W"))
    [repeat] = results[0]["alert_ids"]
    status, view = await client.call("GET", f"/api/alerts/{lead}")
    assert status == 200 and view["count"] == 2
    assert [r["id"] for r in view["repeats"]] == [repeat]
    status, view = await client.call("GET", f"/api/alerts/{repeat}")
    assert (view["status"], view["lead_id"]) == ("collapsed", lead)
    status, body = await client.call("GET", "/api/alerts/000000000000000000000000")
    assert status == 404 and "no alert" in body["error"]


# ---------------------------------------------------------------- actions


async def test_acknowledge(client: Api) -> None:
    alert = await screened(client)
    status, view = await client.call(
        "POST", f"/api/alerts/{alert}/acknowledge", {"note": "phoned pharmacy", "by": "JS"}
    )
    assert status == 200 and view["status"] == "acknowledged"
    assert (view["acknowledged"]["by"], view["acknowledged"]["note"]) == ("JS", "phoned pharmacy")
    at = datetime.fromisoformat(view["acknowledged"]["at"])
    assert at.tzinfo is not None and at <= datetime.now(UTC)
    status, body = await client.call("POST", f"/api/alerts/{alert}/acknowledge", {})
    assert status == 409 and "acknowledged by JS" in body["error"]
    status, _ = await client.call("POST", "/api/alerts/nope/acknowledge")
    assert status == 404


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"note": 5}', 422),
        (json.dumps({"note": "x" * 1001}).encode(), 422),
    ],
)
async def test_acknowledge_bad_bodies(client: Api, raw: bytes, status: int) -> None:
    alert = await screened(client)
    got, body = await client.call("POST", f"/api/alerts/{alert}/acknowledge", raw=raw)
    assert (got, body["status"]) == (status, status)
    _, view = await client.call("GET", f"/api/alerts/{alert}")
    assert view["status"] == "open"


async def test_resolve(client: Api) -> None:
    alert = await screened(client)
    path = f"/api/alerts/{alert}/resolve"
    for body, why in [
        ({}, "'resolution'"),
        ({"resolution": "whatever"}, "'resolution'"),
        ({"resolution": "not-applicable"}, "'reason' is required"),
        ({"resolution": "not-applicable", "reason": "   "}, "'reason' is required"),
    ]:
        status, answer = await client.call("POST", path, body)
        assert status == 422 and why in answer["error"]
    status, view = await client.call(
        "POST", path, {"resolution": "not-applicable", "reason": "drug stopped 2024", "by": "MK"}
    )
    assert status == 200
    assert view["resolved"] == {
        "by": "MK",
        "at": view["resolved"]["at"],
        "resolution": "not-applicable",
        "reason": "drug stopped 2024",
    }
    status, answer = await client.call("POST", path, {"resolution": "done"})
    assert status == 409 and "resolved" in answer["error"]
    status, _ = await client.call("POST", "/api/alerts/nope/resolve", {"resolution": "done"})
    assert status == 404


async def test_snooze_an_alert(client: Api) -> None:
    alert = await screened(client, "MRN103")
    path = f"/api/alerts/{alert}/snooze"
    for body in [
        {"hours": 4},
        {"reason": "x"},
        {"reason": "x", "hours": 0},
        {"reason": "x", "hours": 721},
        {"reason": "x", "hours": "4"},
        {"reason": "x", "hours": True},
    ]:
        status, _ = await client.call("POST", path, body)
        assert status == 422, body
    status, body = await client.call(
        "POST", path, {"reason": "clinic aware", "hours": 24, "by": "JS"}
    )
    assert status == 201
    assert body["alert"]["status"] == "snoozed"
    snooze = body["snooze"]
    assert (snooze["patient_key"], snooze["rule"], snooze["created_by"], snooze["active"]) == (
        "MRN103^HOSP",
        "bb-serology",
        "JS",
        True,
    )
    # the next screen for this patient is held back: stored, not queued
    results = await client.hl7(SCREEN.format(mrn="MRN103", order="TS9", location="4W"))
    [held] = results[0]["alert_ids"]
    _, view = await client.call("GET", f"/api/alerts/{held}")
    assert (view["status"], view["snooze_id"]) == ("snoozed", snooze["id"])
    status, _ = await client.call("POST", path, {"reason": "again", "hours": 1})
    assert status == 409


# ---------------------------------------------------------------- patients and snoozes


async def test_patient_summary(client: Api) -> None:
    alert = await screened(client, "MRN104")
    status, p = await client.call("GET", "/api/patients/" + quote("MRN104^HOSP", safe=""))
    assert status == 200 and p["on_file"]
    [exposure] = p["exposures"]
    assert exposure["drug"] == "daratumumab_iv"
    assert exposure["last_dose"] == "2026-03-01T09:30:00"
    assert exposure["window_end"] == "2026-09-01T09:30:00"  # six months after the last dose
    assert (p["k_status"], p["pretreatment_typing"], p["own_isotype"]) == ("unknown", False, None)
    assert alert in [a["id"] for a in p["alerts"]]
    assert all(a["alert"]["evidence"] for a in p["alerts"])
    status, body = await client.call("GET", "/api/patients/NOBODY%5EHOSP")
    assert status == 404 and "NOBODY^HOSP" in body["error"]


async def test_snooze_routes(client: Api) -> None:
    new = {
        "patient": "MRN105^HOSP",
        "rule": "spep-ife",
        "reason": "IFE already reflexed",
        "hours": 48,
    }
    status, snooze = await client.call("POST", "/api/snoozes", new)
    assert status == 201 and snooze["active"] and snooze["rule"] == "spep-ife"
    for bad in [{**new, "rule": "nope"}, {**new, "patient": ""}, {**new, "reason": None}]:
        status, body = await client.call("POST", "/api/snoozes", bad)
        assert status == 422, bad
    status, _ = await client.call("POST", "/api/snoozes", raw=b"nonsense")
    assert status == 400

    _, body = await client.call("GET", "/api/snoozes?patient=MRN105%5EHOSP")
    assert [s["id"] for s in body["snoozes"]] == [snooze["id"]]
    status, _ = await client.call("GET", "/api/snoozes?active=maybe")
    assert status == 400

    status, lifted = await client.call("DELETE", f"/api/snoozes/{snooze['id']}")
    assert status == 200 and not lifted["active"] and lifted["lifted_by"] == "anonymous"
    status, body = await client.call("DELETE", f"/api/snoozes/{snooze['id']}")
    assert status == 409 and "already lifted" in body["error"]
    _, body = await client.call("GET", "/api/snoozes")
    assert body["snoozes"] == []
    _, body = await client.call("GET", "/api/snoozes?active=false")
    assert len(body["snoozes"]) == 1
    assert (await client.call("DELETE", "/api/snoozes/4242"))[0] == 404
    assert (await client.call("DELETE", "/api/snoozes/abc"))[0] == 400


# ---------------------------------------------------------------- page support


async def test_meta_page_and_static_files(client: Api) -> None:
    await screened(client, "MRN106", location="HEMONC")
    status, meta = await client.call("GET", "/api/meta")
    assert status == 200 and meta["user"] == "anonymous"
    assert "HEMONC" in meta["locations"] and meta["counts"]["open"] >= 1
    assert {r["id"] for r in meta["rules"]} >= {"bb-serology", "spep-ife"}
    assert meta["recommendations"]["KELL_NEGATIVE_UNITS"].startswith("DTT destroys Kell")
    async with client.session.get(client.base + "/") as resp:
        assert resp.status == 200 and "Therapy interference alerts" in await resp.text()
    async with client.session.get(client.base + "/static/app.js") as resp:
        assert resp.status == 200 and "EventSource" in await resp.text()


async def test_events_stream_new_alerts_and_changes(client: Api) -> None:
    async with client.session.get(client.base + "/api/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")

        async def next_event(name: str) -> Any:
            event = ""
            while True:
                line = (await stream.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == name:
                    return json.loads(line[6:])

        async with asyncio.timeout(SAFETY):
            await next_event("hello")
            alert = await screened(client, "MRN107")
            seen = await next_event("alert")
            while seen["id"] != alert:  # the dose's baseline-workup alert comes first
                seen = await next_event("alert")
            assert seen["status"] == "open"
            await client.call("POST", f"/api/alerts/{alert}/acknowledge", {"by": "JS"})
            changed = await next_event("alert")
            assert (changed["id"], changed["status"]) == (alert, "acknowledged")


async def test_openapi_documents_every_route(client: Api, service: Service) -> None:
    status, doc = await client.call("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert service.http is not None
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in service.http.app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and (
            route.resource.canonical.startswith(("/api/", "/cds-services", "/fhir/"))
            or route.resource.canonical in ("/", "/healthz", "/readyz", "/metrics")
        )
    }
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops}
    assert routes - documented == set(), "routes missing from static/openapi.json"
    assert documented - routes == set(), "documented routes that do not exist"
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"], path


# ---------------------------------------------------------------- who acted


async def test_the_authenticated_user_acts_not_the_body(service_factory: ServiceFactory) -> None:
    service: Service = await service_factory(http={"auth_required": True})
    token = auth.new_token()
    at = datetime.now(UTC)
    await service.store.access.add_token(
        "jsmith", "technologist", auth.token_hash(token), by="t", at=at
    )
    sender = auth.new_token()
    await service.store.access.add_token("lis", "sender", auth.token_hash(sender), by="t", at=at)
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{service.http_port}")
        status, results = await api.call(
            "POST",
            "/api/hl7",
            raw=(
                DOSE.format(mrn="MRN200") + SCREEN.format(mrn="MRN200", order="T", location="4W")
            ).encode(),
            headers={"Accept": "application/json", "Authorization": f"Bearer {sender}"},
        )
        assert status == 200
        bench = {"headers": {"Authorization": f"Bearer {token}"}}
        alert = await alert_of_rule(api, results[1], "bb-serology", **bench)
        status, _ = await api.call("GET", "/api/alerts")
        assert status == 401
        status, view = await api.call(
            "POST",
            f"/api/alerts/{alert}/acknowledge",
            {"by": "mallory"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 200 and view["acknowledged"]["by"] == "jsmith"
        status, _ = await api.call(
            "GET", "/api/alerts", headers={"Authorization": f"Bearer {sender}"}
        )
        assert status == 403
