"""Alerts as FHIR R4 DetectedIssue over real HTTP: raised from HL7 v2 sent over MLLP, read with
an API token, validated with fhir.resources, role-gated and audited."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.detectedissue import DetectedIssue

from lisguard.app import Service
from lisguard.fhir.codes import (
    DRUG_SYSTEM,
    ORDER_NUMBER_SYSTEM,
    PATIENT_KEY_SYSTEM,
    RECOMMENDATION_SYSTEM,
    RULE_SYSTEM,
)
from lisguard.web.auth import new_token, token_hash
from tests.conftest import ServiceFactory
from tests.e2e.cds_support import HOSP_OID, dose, screen, send_mllp, site_file


@pytest.fixture
async def secured(
    service_factory: ServiceFactory, tmp_path: Path
) -> tuple[Service, dict[str, str]]:
    svc: Service = await service_factory(
        http={"auth_required": True}, knowledge={"files": [site_file(tmp_path)]}
    )
    tokens = {}
    for role in ("technologist", "sender"):
        tokens[role] = new_token()
        await svc.store.access.add_token(
            role, role, token_hash(tokens[role]), by="t", at=datetime.now(UTC)
        )
    await send_mllp(svc, dose("MRN100"), screen("MRN100", "TS1"))
    return svc, tokens


async def get(svc: Service, path: str, token: str | None) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{svc.http_port}{path}", headers=headers) as resp,
    ):
        return resp.status, resp.content_type, await resp.json(content_type=None)


def codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c["system"] == system]


async def test_a_patients_alerts_as_a_searchset_of_detected_issues(
    secured: tuple[Service, dict[str, str]],
) -> None:
    svc, tokens = secured
    status, ctype, body = await get(
        svc, "/fhir/DetectedIssue?patient=MRN100%5EHOSP", tokens["technologist"]
    )
    assert (status, ctype) == (200, "application/fhir+json")
    bundle = Bundle.model_validate(body)
    assert bundle.type == "searchset" and bundle.total == len(body["entry"]) == 2
    issues = {}
    for entry in body["entry"]:
        issue = entry["resource"]
        DetectedIssue.model_validate(issue)
        assert entry["fullUrl"].endswith(f"/fhir/DetectedIssue/{issue['id']}")
        (rule,) = codes(issue["code"], RULE_SYSTEM)
        issues[rule] = issue
    assert set(issues) == {"baseline-workup", "bb-serology"}
    serology = issues["bb-serology"]
    assert serology["severity"] == "high" and serology["status"] == "final"
    assert serology["patient"]["identifier"] == {
        "system": PATIENT_KEY_SYSTEM,
        "value": "MRN100^HOSP",
    }
    (implicated,) = serology["implicated"]
    assert implicated["type"] == "ServiceRequest"
    assert implicated["identifier"] == {"system": ORDER_NUMBER_SYSTEM, "value": "TS1"}
    drugs = [
        c for e in serology["evidence"] for concept in e.get("code", []) for c in concept["coding"]
    ]
    assert [(d["system"], d["code"]) for d in drugs] == [(DRUG_SYSTEM, "daratumumab_iv")]
    assert any("RXA-5" in d["display"] for e in serology["evidence"] for d in e.get("detail", []))
    mitigations = [codes(m["action"], RECOMMENDATION_SYSTEM)[0] for m in serology["mitigation"]]
    assert mitigations == ["DTT_TREATED_REAGENT_CELLS", "KELL_NEGATIVE_UNITS"]
    assert "implicated" not in issues["baseline-workup"]  # about the patient, no one order


async def test_by_identifier_by_id_and_errors(secured: tuple[Service, dict[str, str]]) -> None:
    svc, tokens = secured
    tech = tokens["technologist"]
    identifier = quote(f"urn:oid:{HOSP_OID}|MRN100", safe="")
    status, _, body = await get(svc, f"/fhir/DetectedIssue?patient={identifier}", tech)
    assert status == 200 and body["total"] == 2
    alert_id = body["entry"][0]["resource"]["id"]
    status, ctype, issue = await get(svc, f"/fhir/DetectedIssue/{alert_id}", tech)
    assert (status, ctype) == (200, "application/fhir+json")
    assert DetectedIssue.model_validate(issue).id == alert_id
    status, _, none = await get(svc, "/fhir/DetectedIssue?patient=NOBODY%5EHOSP", tech)
    assert (status, none["total"]) == (200, 0)
    for path, expected in [
        ("/fhir/DetectedIssue/nope", 404),
        ("/fhir/DetectedIssue", 400),
        ("/fhir/DetectedIssue?patient=MRN100&_count=0", 400),
    ]:
        status, _, outcome = await get(svc, path, tech)
        assert status == expected and outcome["resourceType"] == "OperationOutcome", path


async def test_role_gated_and_audited(secured: tuple[Service, dict[str, str]]) -> None:
    svc, tokens = secured
    path = "/fhir/DetectedIssue?patient=MRN100%5EHOSP"
    assert (await get(svc, path, None))[0] == 401
    assert (await get(svc, path, tokens["sender"]))[0] == 403
    assert (await get(svc, path, "lg_revoked-or-made-up"))[0] == 401
    status, _, body = await get(svc, path, tokens["technologist"])
    assert status == 200
    alert_id = body["entry"][0]["resource"]["id"]
    assert (await get(svc, f"/fhir/DetectedIssue/{alert_id}", tokens["technologist"]))[0] == 200
    reads = [
        e.event
        for e in await svc.store.list_audit(limit=10_000)
        if e.event.kind == "phi.read" and e.event.subject.startswith("/fhir/")
    ]
    assert [(r.actor, r.detail["patient"]) for r in reads] == [
        ("technologist", "MRN100^HOSP"),
        ("technologist", "MRN100^HOSP"),
    ]
