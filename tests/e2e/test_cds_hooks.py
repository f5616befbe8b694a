"""CDS Hooks 2.0 against the running service over TCP: the spec's request shapes, cards from the
same rules as HL7 v2 alerts (the exposure learned from real feeds over MLLP), the negatives, the
EHR's JWT, feedback in the audit log, and no patient state written by a card call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from lisguard.app import Service
from lisguard.store.desk import AlertQuery
from tests.conftest import ServiceFactory
from tests.e2e.cds_support import (
    AUDIENCE,
    KNOWN,
    CdsResponse,
    Discovery,
    EhrKey,
    cds_service,
    dose,
    hook_request,
    medication_request,
    post,
    send_mllp,
    service_request,
)

SIGN = "/cds-services/lisguard-order-sign"
SELECT = "/cds-services/lisguard-order-select"


async def snapshot(svc: Service, key: str) -> tuple[Any, int]:
    """The patient's stored state and how many alerts it has: a card call changes neither."""
    state = await svc.store.get_patient(key)
    alerts = await svc.store.desk.search(AlertQuery(patient=key, limit=500))
    return (state.model_dump() if state is not None else None), len(alerts)


def cards_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    CdsResponse.model_validate(body)  # the whole response, strictly
    return list(body["cards"])


def ordered_codes(card: dict[str, Any]) -> list[str]:
    codes = []
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            concept = action["resource"]["code"]
            codes += [c["code"] for c in concept.get("coding", [])] or [concept["text"]]
    return codes


async def test_discovery_lists_order_select_and_order_sign(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await cds_service(service_factory, tmp_path, EhrKey())
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{svc.http_port}/cds-services") as resp,
    ):
        assert resp.status == 200
        doc = Discovery.model_validate(await resp.json())
    hooks = {s.id: s.hook for s in doc.services}
    assert hooks == {"lisguard-order-select": "order-select", "lisguard-order-sign": "order-sign"}
    for service in doc.services:
        assert service.prefetch is not None
        assert service.prefetch["patient"] == "Patient/{{context.patientId}}"
        assert "MedicationAdministration?patient={{context.patientId}}" in service.prefetch.values()


async def test_order_sign_first_daratumumab_gets_the_baseline_card_with_orders(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    await send_mllp(svc, KNOWN.format(mrn="MRN200"))  # known to lisguard, never on a drug
    before = await snapshot(svc, "MRN200^HOSP")
    assert before[0] is not None
    body = hook_request("order-sign", [medication_request()], "MRN200")
    status, answer = await post(svc, SIGN, body, key.token())
    assert status == 200, answer
    cards = cards_of(answer)
    assert [c["source"]["topic"]["code"] for c in cards] == ["baseline-workup"]
    card = cards[0]
    assert card["indicator"] == "critical" and len(card["summary"]) < 140
    assert "type & screen" in card["summary"]
    assert card["source"]["label"] == "lisguard"
    assert card["source"]["url"].endswith("/#patient=MRN200%5EHOSP")
    assert "**BASELINE_TYPE_AND_SCREEN**" in card["detail"]
    assert card["selectionBehavior"] == "any" and card["overrideReasons"]
    # type & screen, the phenotype (no LOINC code known: text only), the HBV screen (an
    # HBsAg is on file, no anti-HBc: the recommendation is the whole screen)
    codes = ordered_codes(card)
    assert codes[:2] == ["882-1", "890-4"] and codes[3:] == ["5196-1", "16933-4"]
    assert codes[2].startswith("Extended RBC phenotype")
    for suggestion in card["suggestions"]:
        for action in suggestion["actions"]:
            resource = action["resource"]
            assert action["type"] == "create" and resource["resourceType"] == "ServiceRequest"
            assert resource["subject"] == {"reference": "Patient/1288992"}
    assert await snapshot(svc, "MRN200^HOSP") == before  # a draft writes nothing


async def test_order_sign_for_a_patient_lisguard_never_heard_of_gets_all_three(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    body = hook_request("order-sign", [medication_request()], "MRN-NEW")
    status, answer = await post(svc, SIGN, body, key.token())
    assert status == 200
    (card,) = cards_of(answer)
    assert ordered_codes(card)[-2:] == ["5196-1", "16933-4"]  # HBsAg, anti-HBc
    assert await snapshot(svc, "MRN-NEW^HOSP") == (None, 0)


async def test_order_select_antibody_screen_on_daratumumab_learned_over_mllp(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    await send_mllp(svc, dose("MRN300"))  # a real RAS^O17 dose, over MLLP
    before = await snapshot(svc, "MRN300^HOSP")
    body = hook_request(
        "order-select",
        [service_request("890-4")],
        "MRN300",
        selections=["ServiceRequest/smart-ServiceRequest-1"],
    )
    status, answer = await post(svc, SELECT, body, key.token())
    assert status == 200
    (card,) = cards_of(answer)
    assert card["source"]["topic"]["code"] == "bb-serology"
    assert card["indicator"] == "critical"
    assert "DTT" in card["summary"] and "K-negative" in card["summary"]
    assert "**DTT_TREATED_REAGENT_CELLS**" in card["detail"]
    assert "**KELL_NEGATIVE_UNITS**" in card["detail"]
    assert "Daratumumab" in card["detail"]
    assert "suggestions" not in card  # advice for the bench, no order to create
    assert await snapshot(svc, "MRN300^HOSP") == before


async def test_order_select_answers_for_the_selection_only(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """A daratumumab draft already on the list, then an antibody screen picked: the screen's
    card (the draft makes the exposure active); the daratumumab draft's own card came when it
    was picked."""
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    drafts = [medication_request(), service_request("890-4")]
    body = hook_request(
        "order-select", drafts, "MRN310", selections=["ServiceRequest/smart-ServiceRequest-1"]
    )
    status, answer = await post(svc, SELECT, body, key.token())
    assert status == 200
    assert [c["source"]["topic"]["code"] for c in cards_of(answer)] == ["bb-serology"]


async def test_prefetched_administrations_count_as_exposure(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    body = hook_request("order-sign", [service_request("890-4")], "MRN320")
    recent = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    body["prefetch"]["medicationAdministrations"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationAdministration",
                    "id": "ma-1",
                    "status": "completed",
                    "medicationCodeableConcept": {"text": "DARZALEX FASPRO 1800 mg SC"},
                    "subject": {"reference": "Patient/1288992"},
                    "effectiveDateTime": recent,
                }
            }
        ],
    }
    status, answer = await post(svc, SIGN, body, key.token())
    assert status == 200
    assert [c["source"]["topic"]["code"] for c in cards_of(answer)] == ["bb-serology"]
    assert await snapshot(svc, "MRN320^HOSP") == (None, 0)


async def test_negatives_are_answered_with_no_card_not_an_error(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    await send_mllp(svc, KNOWN.format(mrn="MRN400"))
    screen = [service_request("890-4")]
    # an unknown patient ordering an antibody screen
    status, answer = await post(
        svc, SIGN, hook_request("order-sign", screen, "NOBODY"), key.token()
    )
    assert (status, cards_of(answer)) == (200, [])
    # a known patient, never exposed
    status, answer = await post(
        svc, SIGN, hook_request("order-sign", screen, "MRN400"), key.token()
    )
    assert (status, cards_of(answer)) == (200, [])
    # no identifier prefetched: judged on the request alone, and an antibody screen is nothing
    status, answer = await post(svc, SIGN, hook_request("order-sign", screen, None), key.token())
    assert (status, cards_of(answer)) == (200, [])
    # a drug lisguard does not know (the spec's amoxicillin example)
    amoxicillin = medication_request(rxnorm="617993")
    amoxicillin["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617993"}],
        "text": "Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension",
    }
    body = hook_request("order-sign", [amoxicillin], "MRN400")
    status, answer = await post(svc, SIGN, body, key.token())
    assert (status, cards_of(answer)) == (200, [])


async def test_no_trusted_jwt_no_card(service_factory: ServiceFactory, tmp_path: Path) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    body = hook_request("order-sign", [medication_request()], "MRN500")
    stranger = EhrKey()  # same kid, another key: a forged signature
    replayed = key.token()
    assert (await post(svc, SIGN, body, replayed))[0] == 200
    refused = {
        "no token": None,
        "not a JWT": "lg_not-a-jwt",
        "bad signature": stranger.token(),
        "expired": key.token(exp=1_700_000_000, iat=1_699_999_900),
        "wrong aud": key.token(aud="https://elsewhere.example.org/cds-services"),
        "wrong iss": key.token(iss="https://rogue.example.org"),
        "no jti": key.token(jti=None),
        "no sub": key.token(sub=None),
        "too long-lived": key.token(exp=2_000_000_000),
        "unknown kid": key.token(headers={"kid": "other"}),
        "replayed": replayed,
    }
    for why, token in refused.items():
        status, answer = await post(svc, SIGN, body, token)
        assert status == 401, why
        assert "cards" not in answer and answer["status"] == 401 and answer["error"], why
    # the service's own URL as aud is taken too
    status, _ = await post(svc, SIGN, body, key.token(aud=f"{AUDIENCE}/lisguard-order-sign"))
    assert status == 200
    status, answer = await post(svc, "/cds-services/lisguard-order-sign/feedback", {}, None)
    assert status == 401 and "cards" not in answer


async def test_feedback_lands_in_the_audit_log(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    body = hook_request("order-sign", [medication_request()], "MRN600")
    _, answer = await post(svc, SIGN, body, key.token())
    (card,) = cards_of(answer)
    reason = card["overrideReasons"][0]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2026-03-02T08:20:00Z",
            },
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason, "userComment": "Jane Doe says done at St X"},
                "outcomeTimestamp": "2026-03-02T08:21:00Z",
            },
            {"card": "card-from-elsewhere", "outcome": "ignored"},
        ]
    }
    status, _ = await post(svc, f"{SIGN}/feedback", feedback, key.token())
    assert status == 200
    events = [e.event for e in await svc.store.list_audit(limit=10_000)]
    (issued,) = [e for e in events if e.kind == "cds.cards"]
    assert issued.subject == body["hookInstance"] and issued.detail["patient"] == "MRN600^HOSP"
    assert issued.detail["cards"] == [{"uuid": card["uuid"], "rule": "baseline-workup"}]
    got = [e for e in events if e.kind == "cds.feedback"]
    assert [(e.subject, e.detail["outcome"]) for e in got] == [
        (card["uuid"], "accepted"),
        (card["uuid"], "overridden"),
        ("card-from-elsewhere", "ignored"),
    ]
    accepted, overridden, ignored = got
    assert accepted.actor == "https://ehr.example.org"
    assert (
        accepted.detail["patient"] == "MRN600^HOSP" and accepted.detail["rule"] == "baseline-workup"
    )
    assert accepted.detail["accepted_suggestions"] == [card["suggestions"][0]["uuid"]]
    assert overridden.detail["override_reason"]["code"] == reason["code"]
    assert overridden.detail["comment_given"] is True
    assert "Jane" not in repr([e.detail for e in got])  # the comment is free text: not kept
    assert ignored.detail["card_known"] is False
    status, answer = await post(
        svc, f"{SIGN}/feedback", {"feedback": [{"card": "x", "outcome": "maybe"}]}, key.token()
    )
    assert status == 400 and "outcome" in answer["error"]


async def test_bad_requests_are_400_and_a_switched_off_service_404(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    body = hook_request("order-select", [medication_request()], "MRN700")
    status, answer = await post(svc, SIGN, body, key.token())  # order-select to order-sign
    assert status == 400 and "order-sign" in answer["error"]
    bad = hook_request("order-sign", [{**medication_request(), "status": 12}], "MRN700")
    status, answer = await post(svc, SIGN, bad, key.token())
    assert status == 400 and "draftOrders" in answer["error"] and "status" in answer["error"]
    status, _ = await post(svc, "/cds-services/nope", body, key.token())
    assert status == 404
    url = f"http://127.0.0.1:{svc.http_port}{SIGN}"
    headers = {"Authorization": f"Bearer {key.token()}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{", headers=headers) as r:
        assert r.status == 400 and (await r.json())["error"] == "the body is not JSON"
    off: Service = await service_factory()
    status, _ = await post(off, SIGN, body, key.token())
    assert status == 404


async def test_the_openapi_document_lists_discovery_services_and_fhir(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc = await cds_service(service_factory, tmp_path, EhrKey())
    url = f"http://127.0.0.1:{svc.http_port}/api/openapi.json"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        doc = await resp.json()
    paths = doc["paths"]
    assert set(paths["/cds-services"]) == {"get"}
    assert set(paths["/cds-services/{service_id}"]) == {"post"}
    assert set(paths["/cds-services/{service_id}/feedback"]) == {"post"}
    assert (
        set(paths["/fhir/DetectedIssue"]) == set(paths["/fhir/DetectedIssue/{alert_id}"]) == {"get"}
    )
    enum = paths["/cds-services/{service_id}"]["post"]["parameters"][0]["schema"]["enum"]
    assert enum == ["lisguard-order-select", "lisguard-order-sign"]
    assert doc["components"]["securitySchemes"]["ehrJwt"]["bearerFormat"] == "JWT"


MERGE = (
    "MSH|^~\\&|EPICADT|HOSP|LISGUARD|HOSP|20260205101522||ADT^A40^ADT_A39|MRG-1|P|2.5\r"
    "EVN|A40|20260205101522\r"
    "PID|1||MRN801^^^HOSP^MR||DOE^JANE\r"
    "MRG|MRN802^^^HOSP^MR\r"
)


async def test_a_retired_identifier_reads_its_survivors_state(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """The EHR still names the patient by the MRN merged away: the card reads the survivor's
    exposure, as an HL7 v2 message with that MRN would."""
    key = EhrKey()
    svc = await cds_service(service_factory, tmp_path, key)
    await send_mllp(svc, MERGE, dose("MRN801"))
    before = await snapshot(svc, "MRN801^HOSP"), await snapshot(svc, "MRN802^HOSP")
    body = hook_request("order-sign", [service_request("890-4")], "MRN802")
    status, answer = await post(svc, SIGN, body, key.token())
    assert status == 200
    (card,) = cards_of(answer)
    assert card["source"]["topic"]["code"] == "bb-serology"
    assert card["source"]["url"].endswith("/#patient=MRN801%5EHOSP")  # the survivor
    assert (await snapshot(svc, "MRN801^HOSP"), await snapshot(svc, "MRN802^HOSP")) == before
