"""Coding systems: the standard ones lisguard reads in FHIR, and the ones it owns.

lisguard's own systems live under LISGUARD_FHIR_BASE; the codes in them are the alert contract's
(rule ids, recommendation codes: docs/ALERTS.md), which never change meaning.
"""

from __future__ import annotations

# lisguard's code systems and identifier systems (URLs lisguard owns; not resolvable)
LISGUARD_FHIR_BASE = "https://lisguard.example/fhir"
RULE_SYSTEM = f"{LISGUARD_FHIR_BASE}/CodeSystem/rule"
RECOMMENDATION_SYSTEM = f"{LISGUARD_FHIR_BASE}/CodeSystem/recommendation"
DRUG_SYSTEM = f"{LISGUARD_FHIR_BASE}/CodeSystem/drug"  # knowledge-base drug ids (drugs.yaml)
OVERRIDE_REASON_SYSTEM = f"{LISGUARD_FHIR_BASE}/CodeSystem/override-reason"
PROCESSING_ID_SYSTEM = f"{LISGUARD_FHIR_BASE}/CodeSystem/processing-id"  # MSH-11 P/T/D
ALERT_ID_SYSTEM = f"{LISGUARD_FHIR_BASE}/sid/alert"
PATIENT_KEY_SYSTEM = f"{LISGUARD_FHIR_BASE}/sid/patient-key"  # PID-3.1^authority
ORDER_NUMBER_SYSTEM = f"{LISGUARD_FHIR_BASE}/sid/order-number"  # placer, else filler number

# standard systems, and the coding system names lisguard's matchers know them by
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CVX = "http://hl7.org/fhir/sid/cvx"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types (MR, ...)

SYSTEM_NAMES: dict[str, str] = {
    LOINC: "LN",
    "urn:oid:2.16.840.1.113883.6.1": "LN",
    RXNORM: "RXNORM",
    "urn:oid:2.16.840.1.113883.6.88": "RXNORM",
    NDC: "NDC",
    "urn:oid:2.16.840.1.113883.6.69": "NDC",
    HCPCS: "HCPCS",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    CVX: "CVX",
    "urn:oid:2.16.840.1.113883.12.292": "CVX",
    "http://snomed.info/sct": "SCT",  # never read as an NDC or HCPCS code
}


def system_name(system: str | None) -> str:
    """The HL7 v2 coding system name the knowledge base matches on ("LN", "RXNORM", "NDC",...);
    any other system (a site's local code system) as it is written."""
    if not system:
        return ""
    return SYSTEM_NAMES.get(system.strip(), system.strip())
