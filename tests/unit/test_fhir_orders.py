"""FHIR R4 draft orders, Patient identifiers and medication history into lisguard's facts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from lisguard.domain.facts import MedicationAction, PatientId
from lisguard.domain.identity import PatientIdentity
from lisguard.domain.kb_models import IdentityRules
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.domain.recording import drug_of
from lisguard.fhir.orders import (
    FhirInputError,
    naive,
    patient_id,
    read_drafts,
    read_history,
)

NOW = datetime(2026, 3, 2, 8, 0)
PATIENT = PatientId("MRN1", "HOSP")
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def med(rid: str = "m1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        **fields,
    }


def lab(rid: str = "s1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        **fields,
    }


def drafts(*resources: dict[str, Any], leave_out: frozenset[str] = frozenset()) -> Any:
    return read_drafts(
        bundle(*resources),
        PATIENT,
        hook_instance="h1",
        hook="order-sign",
        now=NOW,
        leave_out=leave_out,
    )


def test_patient_identifiers_key_the_patient_through_the_identity_rules() -> None:
    identity = PatientIdentity(IdentityRules(authorities=[["HOSP", "urn:oid:1.2.3"]]))
    resource = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:1.2.3", "value": "OLD9", "use": "old", "type": MR},
            {
                "system": "https://hosp.example/account",
                "value": "A77",
                "type": {"coding": [{"code": "AN"}]},
            },
            {"system": "urn:oid:1.2.3", "value": "MRN1", "type": MR},
        ],
    }
    assert patient_id(resource, identity) == PatientId("MRN1", "HOSP")
    # the bare OID (as PID-3.4.2 carries it) is the same register
    bare = PatientIdentity(IdentityRules(authorities=[["HOSP", "1.2.3"]]))
    assert patient_id(resource, bare) == PatientId("MRN1", "HOSP")
    # no site setting: the system as written
    assert patient_id(resource, PatientIdentity()) == PatientId("MRN1", "urn:oid:1.2.3")
    assert patient_id({"resourceType": "Patient", "id": "p"}, identity) is None
    assert patient_id(None, identity) is None
    with pytest.raises(FhirInputError, match=r"prefetch\.patient"):
        patient_id({"resourceType": "Patient", "gender": 3}, identity)


def test_a_medication_request_is_an_order_matched_by_rxnorm_ndc_or_name() -> None:
    kb = load_knowledge_base([])
    rx = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2375136"}]}
    ndc = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "57894-0502-05"}]}
    named = {"text": "isatuximab-irfc 500 mg IV"}
    msg = drafts(
        med("a", medicationCodeableConcept=rx),
        med("b", medicationCodeableConcept=ndc),
        med("c", medicationCodeableConcept=named),
    ).message
    assert msg.time == NOW and msg.patient == PATIENT and msg.key.control_id == "h1"
    first = msg.medications[0]
    assert first.action is MedicationAction.ORDER and first.order_id == "a"
    assert first.codes[0].system == "RXNORM" and first.time == NOW
    found = [d.id if (d := drug_of(kb, m)) else None for m in msg.medications]
    assert found == ["daratumumab_sc", "daratumumab_iv", "isatuximab_iv"]


def test_medication_reference_route_and_cancelled_orders() -> None:
    kb = load_knowledge_base([])
    contained = {
        "resourceType": "Medication",
        "id": "dara",
        "code": {"text": "daratumumab"},
    }
    sc = {
        "route": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "34206005",
                    "display": "Subcutaneous route",
                }
            ]
        }
    }
    msg = drafts(
        med(
            "a",
            contained=[contained],
            medicationReference={"reference": "#dara"},
            dosageInstruction=[sc],
        ),
        med("b", status="cancelled", medicationCodeableConcept={"text": "daratumumab"}),
    ).message
    ref, cancelled = msg.medications
    assert "Subcutaneous" in ref.route
    found = drug_of(kb, ref)
    assert found is not None and found.id == "daratumumab_sc"  # given SC: the SC product
    assert cancelled.not_given


def test_a_service_request_is_a_lab_order_loinc_first() -> None:
    kb = load_knowledge_base([])
    code = {
        "coding": [
            {"system": "https://hosp.example/lab-codes", "code": "BBTS", "display": "Type+screen"},
            {"system": "http://loinc.org", "code": "890-4"},
        ],
        "text": "Antibody screen",
    }
    msg = drafts(lab("s1", code=code), lab("s2", code={"text": "TYPE AND SCREEN"})).message
    loinc, text = msg.lab_orders
    assert (loinc.service.code, loinc.service.system) == ("890-4", "LN")
    assert loinc.alt_service.code == "BBTS"
    assert loinc.order_id == loinc.placer == "s1" and not loinc.resulted and loinc.time == NOW
    assert kb.categorize(loinc.service) and kb.categorize(text.service)
    revoked = drafts(lab("s3", status="revoked", code=code)).message.lab_orders[0]
    assert revoked.cancelled


def test_leave_out_other_resource_types_and_invalid_bundles() -> None:
    nutrition = {
        "resourceType": "NutritionOrder",
        "id": "n1",
        "status": "draft",
        "intent": "order",
        "patient": {"reference": "Patient/p"},
        "dateTime": "2026-03-02",
    }
    read = drafts(
        med("a", medicationCodeableConcept={"text": "x"}),
        lab("s1", code={"text": "y"}),
        nutrition,
        leave_out=frozenset({"ServiceRequest/s1"}),
    )
    assert read.orders == ("MedicationRequest/a",) and not read.message.lab_orders
    with pytest.raises(FhirInputError, match="draftOrders"):
        drafts(med("a", intent="wish"))
    with pytest.raises(FhirInputError, match="Bundle"):
        read_drafts(
            {"resourceType": "Patient"}, PATIENT, hook_instance="h", hook="order-sign", now=NOW
        )


def test_history_doses_and_orders_dated_by_their_own_times() -> None:
    given = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "medicationCodeableConcept": {"text": "Privigen"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2026-02-20T10:00:00+01:00",
        "dosage": {"dose": {"value": 30, "unit": "g"}},
    }
    refused = {**given, "id": "ma2", "status": "not-done"}
    ordered = med(
        "old",
        status="active",
        authoredOn="2026-01-05",
        medicationCodeableConcept={"text": "teclistamab"},
    )
    draft = med("d1", status="draft", medicationCodeableConcept={"text": "teclistamab"})
    prefetch = {
        "medicationAdministrations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": given}, {"resource": refused}],
        },
        "medicationRequests": bundle(ordered, draft),
    }
    msg = read_history(
        prefetch, PATIENT, hook_instance="h", now=NOW, drafts=frozenset({"MedicationRequest/d1"})
    )
    assert msg is not None
    order, dose, not_done = msg.medications  # orders first, then doses
    assert dose.action is MedicationAction.ADMINISTRATION
    assert dose.time == datetime(2026, 2, 20, 10, 0)  # wall clock kept, offset dropped
    assert (dose.amount, dose.amount_units) == ("30", "g")
    assert not_done.not_given
    assert order.action is MedicationAction.ORDER and order.time == datetime(2026, 1, 5)
    assert read_history({}, PATIENT, hook_instance="h", now=NOW) is None


def test_naive_times() -> None:
    assert naive("2026-03") == datetime(2026, 3, 1)
    assert naive("2026") == datetime(2026, 1, 1)
    assert naive(date(2026, 3, 4)) == datetime(2026, 3, 4)
    assert naive(None) is None and naive("soon") is None
