"""The shift hand-over over real TCP (issue 16 item 5): alerts raised from HL7 v2 sent over MLLP,
acknowledged and resolved through the API, escalated through `alert.escalated` audit events
(written here through the store's audit path, as the escalation desk writes them), then GET
/api/handover?since= lists them per patient with the two identifiers; role-gated, and audited as
a read of each patient listed."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import AuditEvent
from tests.conftest import ServiceFactory
from tests.e2e.print_support import DARATUMUMAB, SCREEN, audit, get, message, secured, send
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable, with_query

HANDOVER = "/api/handover"


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """Every backend answers the desk and audit searches the hand-over makes."""
    if request.param == "sqlite":
        yield None  # the service fixture's own file
    elif request.param == "memory":
        yield "memory://"
    else:
        reason = await pg_reachable(PG_DSN)
        if reason is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
            pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        async with fresh_schema(PG_DSN, "lisguard_handover") as (schema, _admin):
            yield with_query(PG_DSN, search_path=schema)


async def act(svc: Service, token: str, alert_id: str, action: str, body: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{svc.http_port}/api/alerts/{alert_id}/{action}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=json.dumps(body), headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def alert_of(svc: Service, patient: str, rule: str) -> str:
    (found,) = [
        s.alert.id for s in await svc.store.list_alerts(patient=patient) if s.alert.rule == rule
    ]
    return found


async def test_handover_lists_open_acknowledged_and_escalated_per_patient(
    store_url: str | None,
    service_factory: ServiceFactory,  # the schema outlives the service
) -> None:
    svc, tokens = await secured(service_factory, store_url)
    tech = tokens["technologist"]
    for mrn, name in (("HO1", "AALTO^EINO"), ("HO2", "BRANDT^LOTTE"), ("HO3", "CRUZ^ANA")):
        await send(
            svc,
            message(DARATUMUMAB, mrn, 7, name=name, dob="19600202"),
            message(SCREEN, mrn, 0.05, name=name, dob="19600202"),
        )
    screen1 = await alert_of(svc, "HO1^HOSP", "bb-serology")
    screen2 = await alert_of(svc, "HO2^HOSP", "bb-serology")
    baseline3 = await alert_of(svc, "HO3^HOSP", "baseline-workup")
    await act(svc, tech, screen1, "acknowledge", {"note": "DTT cells requested from reference lab"})
    at = datetime.now(UTC)
    await audit(
        svc.store,
        AuditEvent(
            "alert.escalated",
            at,
            "technologist-b",
            screen2,
            {"patient": "HO2^HOSP", "to": "transfusion physician", "reason": "no K- units"},
        ),
        AuditEvent("alert.escalated", at, "technologist-b", baseline3, {"patient": "HO3^HOSP"}),
    )
    await act(svc, tech, baseline3, "resolve", {"resolution": "done"})

    status, body = await get(svc, HANDOVER, tokens["manager"])  # default: the last 12 hours
    assert status == 200, body
    assert body["default_hours"] == 12 and body["printed_by"] == "manager-jo"
    since = datetime.fromisoformat(body["since"])
    assert timedelta(hours=11) < datetime.now(UTC) - since < timedelta(hours=13)
    # escalated patients first, then those with open alerts
    assert [p["patient_key"] for p in body["patients"]] == ["HO2^HOSP", "HO3^HOSP", "HO1^HOSP"]
    ho2, ho3, ho1 = body["patients"]
    assert ho1["identifiers"] == {
        "name": "AALTO, EINO",
        "birth_date": "1960-02-02",
        "mrn": "HO1",
        "authority": "HOSP",
    }
    lines1 = {a["rule"]: a for a in ho1["alerts"]}
    assert lines1["bb-serology"]["status"] == "acknowledged"
    assert lines1["bb-serology"]["acknowledged"]["by"] == "technologist-jo"
    assert lines1["bb-serology"]["acknowledged"]["note"] == "DTT cells requested from reference lab"
    assert lines1["bb-serology"]["test"] == "TYPE AND SCREEN · BBTS"
    assert lines1["baseline-workup"]["status"] == "open"
    first2 = ho2["alerts"][0]  # the escalated alert leads its patient
    assert first2["id"] == screen2 and first2["status"] == "open"
    assert [(e["by"], e["to"], e["reason"]) for e in first2["escalations"]] == [
        ("technologist-b", "transfusion physician", "no K- units")
    ]
    # escalated, then resolved: still handed over, with its resolution
    (resolved,) = [a for a in ho3["alerts"] if a["id"] == baseline3]
    assert resolved["status"] == "resolved" and resolved["resolved"]["by"] == "technologist-jo"
    assert resolved["escalations"][0]["by"] == "technologist-b"
    assert body["counts"] == {"open": 4, "acknowledged": 1, "escalated": 2, "patients": 3}
    assert body["older_unresolved"] == 0

    reads = await svc.store.access.search_audit(AuditQuery(kinds=("phi.read",), limit=50))
    handover_reads = [e.event for e in reads if e.event.detail.get("purpose") == "handover"]
    assert sorted(e.detail["patient"] for e in handover_reads) == [
        "HO1^HOSP",
        "HO2^HOSP",
        "HO3^HOSP",
    ]
    assert {(e.actor, e.subject) for e in handover_reads} == {("manager-jo", HANDOVER)}
    # "who looked at this patient" finds the hand-over
    about = await svc.store.access.search_audit(AuditQuery(patient="HO2^HOSP", limit=50))
    assert any(e.event.detail.get("purpose") == "handover" for e in about)


async def test_since_leaves_out_what_did_not_change_and_counts_it(
    store_url: str | None,
    service_factory: ServiceFactory,  # the schema outlives the service
) -> None:
    svc, tokens = await secured(service_factory, store_url)
    tech = tokens["technologist"]
    await send(svc, message(DARATUMUMAB, "HO4", 7), message(SCREEN, "HO4", 0.05))
    await send(svc, message(DARATUMUMAB, "HO5", 7), message(SCREEN, "HO5", 0.05))
    later = datetime.now(UTC)
    _, body = await get(svc, HANDOVER, tech, since=later.isoformat())
    assert body["patients"] == [] and body["older_unresolved"] == 4  # baseline + screen each
    await act(svc, tech, await alert_of(svc, "HO5^HOSP", "bb-serology"), "acknowledge", {})
    await audit(
        svc.store,
        AuditEvent(
            "alert.escalated",
            datetime.now(UTC),
            "technologist-jo",
            await alert_of(svc, "HO4^HOSP", "baseline-workup"),
            {"patient": "HO4^HOSP"},
        ),
    )
    _, body = await get(svc, HANDOVER, tech, since=later.isoformat())
    listed = {p["patient_key"]: [a["rule"] for a in p["alerts"]] for p in body["patients"]}
    assert listed == {"HO4^HOSP": ["baseline-workup"], "HO5^HOSP": ["bb-serology"]}
    assert body["older_unresolved"] == 2
    # an escalation before `since` is not "escalated since"
    _, body = await get(svc, HANDOVER, tech, since=datetime.now(UTC).isoformat())
    assert body["patients"] == [] and body["counts"]["escalated"] == 0
    # nobody listed: still a read
    reads = await svc.store.access.search_audit(AuditQuery(kinds=("phi.read",), limit=50))
    newest = next(e.event for e in reads if e.event.subject == HANDOVER)
    assert "patient" not in newest.detail and newest.detail["purpose"] == "handover"


async def test_handover_roles_and_bad_times(service_factory: ServiceFactory) -> None:
    svc, tokens = await secured(service_factory)
    assert (await get(svc, HANDOVER, None))[0] == 401
    for role in ("sender", "metrics"):
        assert (await get(svc, HANDOVER, tokens[role]))[0] == 403, role
    for role in ("technologist", "manager", "admin"):
        assert (await get(svc, HANDOVER, tokens[role]))[0] == 200, role
    now = datetime.now(UTC)
    for since in ("yesterday", (now + timedelta(hours=1)).isoformat(), "2020-01-01"):
        status, body = await get(svc, HANDOVER, tokens["technologist"], since=since)
        assert status == 400 and "since" in body["error"], since
    status, _ = await get(
        svc, HANDOVER, tokens["technologist"], since=(now - timedelta(hours=8)).isoformat()
    )
    assert status == 200
