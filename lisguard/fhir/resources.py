"""lisguard's alerts and recommendations as FHIR R4 resources, built and validated with
fhir.resources: an alert is a DetectedIssue; a recommendation that is an order is the
ServiceRequest(s) a CDS Hooks card suggests.

Codes in suggested orders are only the LOINC codes of config/knowledge/tests.yaml (the catalog
that recognises the same tests when they come back in a feed) and ../shared/DOMAIN.md; where
none exists (an extended RBC phenotype panel has no LOINC code there), the order is text only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.servicerequest import ServiceRequest

from lisguard.domain.alerts import RECOMMENDATION_TEXT, Alert, Recommendation, Severity
from lisguard.fhir.codes import (
    ALERT_ID_SYSTEM,
    DRUG_SYSTEM,
    LOINC,
    ORDER_NUMBER_SYSTEM,
    PATIENT_KEY_SYSTEM,
    PROCESSING_ID_SYSTEM,
    RECOMMENDATION_SYSTEM,
    RULE_SYSTEM,
)

R = Recommendation

# DetectedIssue.severity (FHIR value set detectedissue-severity)
SEVERITY = {Severity.HIGH: "high", Severity.MEDIUM: "moderate", Severity.LOW: "low"}


@dataclass(frozen=True, slots=True)
class SuggestedTest:
    text: str  # the test's name in config/knowledge/tests.yaml
    loinc: str = ""  # "": no code known: the order goes as text


# the orders a recommendation asks for; HBV markers by `immunoglobulin.hbv_markers`
TYPE_AND_SCREEN = (
    SuggestedTest("ABO group and RhD type", "882-1"),
    SuggestedTest("Red cell antibody screen", "890-4"),
)
PHENOTYPE = (
    SuggestedTest(
        "Extended RBC phenotype (C, c, E, e, K, Jka, Jkb, Fya, Fyb, S, s), or RBC genotype if"
        " already dosed"
    ),
)
HBV_TESTS = {
    "hbsag": SuggestedTest("Hepatitis B surface antigen (HBsAg)", "5196-1"),
    "anti_hbc": SuggestedTest("Hepatitis B core antibody, total (anti-HBc)", "16933-4"),
    "anti_hbs": SuggestedTest("Hepatitis B surface antibody (anti-HBs)", "16935-9"),
}
SUGGESTION_LABELS = {
    R.BASELINE_TYPE_AND_SCREEN: "Order ABO/RhD and an antibody screen",
    R.PRETREATMENT_PHENOTYPE: "Order an extended RBC phenotype (or RBC genotype)",
    R.HBV_SCREEN_BEFORE_FIRST_DOSE: "Order hepatitis B serology",
}


def suggested_tests(
    rec: Recommendation, hbv_markers: Sequence[str] = ("hbsag", "anti_hbc")
) -> tuple[SuggestedTest, ...]:
    """The orders a recommendation stands for; () for advice that is no order."""
    if rec is R.BASELINE_TYPE_AND_SCREEN:
        return TYPE_AND_SCREEN
    if rec is R.PRETREATMENT_PHENOTYPE:
        return PHENOTYPE
    if rec is R.HBV_SCREEN_BEFORE_FIRST_DOSE:
        return tuple(HBV_TESTS[m] for m in hbv_markers if m in HBV_TESTS)
    return ()


def recommendation_concept(rec: Recommendation) -> dict[str, Any]:
    meaning = RECOMMENDATION_TEXT.get(rec, rec.value)
    return {"coding": [{"system": RECOMMENDATION_SYSTEM, "code": rec.value}], "text": meaning}


def service_request(test: SuggestedTest, rec: Recommendation, patient_ref: str) -> dict[str, Any]:
    """A draft order for the EHR to sign: the test (LOINC when known), why (the
    recommendation code), for the patient of the hook call (`Patient/{id}`)."""
    code: dict[str, Any] = {"text": test.text}
    if test.loinc:
        code["coding"] = [{"system": LOINC, "code": test.loinc}]
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": code,
        "subject": {"reference": patient_ref},
        "reasonCode": [recommendation_concept(rec)],
    }
    return _json(ServiceRequest.model_validate(resource))


def detected_issue(
    alert: Alert,
    created_at: datetime,
    *,
    rule_title: str = "",
    drug_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One alert as a DetectedIssue: code the rule, severity, implicated the order, evidence
    the exposure (drugs and the segments that showed it), one mitigation per recommendation."""
    names = drug_names or {}
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": alert.id,
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": alert.id}],
        "status": "final",
        "code": {
            "coding": [{"system": RULE_SYSTEM, "code": alert.rule.value, **_display(rule_title)}],
            "text": rule_title or alert.rule.value,
        },
        "severity": SEVERITY[alert.severity],
        "patient": {
            "identifier": {"system": PATIENT_KEY_SYSTEM, "value": alert.patient_key},
        },
        "identifiedDateTime": created_at.isoformat(),
        "author": {"display": "lisguard"},
        "detail": alert.text,
        "mitigation": [{"action": recommendation_concept(r)} for r in alert.recommendations],
    }
    if alert.test:
        resource["meta"] = {"tag": [{"system": PROCESSING_ID_SYSTEM, "code": alert.processing_id}]}
    implicated = _implicated(alert)
    if implicated:
        resource["implicated"] = [implicated]
    evidence: list[dict[str, Any]] = []
    if alert.drugs:
        concepts = [
            {"coding": [{"system": DRUG_SYSTEM, "code": d, **_display(names.get(d, ""))}]}
            for d in alert.drugs
        ]
        evidence.append({"code": concepts})
    details = [
        {"display": _evidence_text(e.location, e.message, e.text, e.time)} for e in alert.evidence
    ]
    if details:
        evidence.append({"detail": details})
    if evidence:
        resource["evidence"] = evidence
    return _json(DetectedIssue.model_validate(resource))


def searchset(resources: Sequence[dict[str, Any]], base: str, self_url: str) -> dict[str, Any]:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
    return _json(Bundle.model_validate(bundle))


def _implicated(alert: Alert) -> dict[str, Any] | None:
    """The order the alert is about: a test order (a ServiceRequest, by its order number), or
    a drug order; None for an alert about the patient (baseline-workup's "" and "HBV", the
    bispecific course)."""
    order = alert.order
    if not order or order == "HBV" or order.startswith("course "):
        return None
    ref: dict[str, Any] = {"identifier": {"system": ORDER_NUMBER_SYSTEM, "value": order}}
    if alert.order_code or alert.order_text:
        ref["type"] = "ServiceRequest"
        ref["display"] = alert.order_text or alert.order_code
    return ref


def _evidence_text(location: str, message: str, text: str, time: datetime | None) -> str:
    when = f" ({time.isoformat()})" if time is not None else ""
    return f"{location} of message {message}: {text}{when}"


def _display(text: str) -> dict[str, str]:
    return {"display": text} if text else {}


def _json(resource: Any) -> dict[str, Any]:
    data: dict[str, Any] = resource.model_dump(mode="json")
    return data
