"""Alerts as DetectedIssue and cards; suggested orders carry only codes lisguard's catalog has."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity
from lisguard.fhir.cards import INDICATOR, SUMMARY_MAX, card, detail, summary
from lisguard.fhir.codes import RECOMMENDATION_SYSTEM, RULE_SYSTEM, system_name
from lisguard.fhir.resources import (
    HBV_TESTS,
    PHENOTYPE,
    TYPE_AND_SCREEN,
    detected_issue,
    searchset,
    suggested_tests,
)
from lisguard.settings import CdsSettings, Settings
from lisguard.web.views import RULE_TITLES

ROOT = Path(__file__).resolve().parents[2]


def alert(**fields: object) -> Alert:
    data: dict[str, object] = {
        "id": "a" * 24,
        "rule": RuleId.BB_SEROLOGY,
        "patient": "MRN1",
        "patient_authority": "HOSP",
        "message": "LAB1",
        "order": "ORD-7",
        "severity": Severity.HIGH,
        "recommendations": (
            Recommendation.DTT_TREATED_REAGENT_CELLS,
            Recommendation.KELL_NEGATIVE_UNITS,
        ),
        "text": "On Daratumumab (last dose 2026-03-01): use *DTT* cells [x].",
        "drugs": ("daratumumab_iv",),
        "evidence": (EvidenceItem(message="RX1", location="RXA-5", text="J9145^daratumumab"),),
        "sources": ("DARZALEX",),
        "order_code": "890-4",
        "order_text": "Antibody screen",
        **fields,
    }
    return Alert.model_validate(data)


def test_suggested_codes_are_only_the_catalogs_or_domain_md() -> None:
    tests = yaml.safe_load((ROOT / "config" / "knowledge" / "tests.yaml").read_text())["tests"]
    catalog = {code for t in tests for code in t.get("loinc", [])}
    domain = set(re.findall(r"\b\d{3,5}-\d\b", (ROOT.parent / "shared" / "DOMAIN.md").read_text()))
    suggested = [t for t in (*TYPE_AND_SCREEN, *PHENOTYPE, *HBV_TESTS.values())]
    for test in suggested:
        assert not test.loinc or test.loinc in catalog or test.loinc in domain, test
    assert [t.loinc for t in TYPE_AND_SCREEN] == ["882-1", "890-4"]
    assert PHENOTYPE[0].loinc == ""  # no panel code known: text only, never an invented one
    hbv = suggested_tests(Recommendation.HBV_SCREEN_BEFORE_FIRST_DOSE)
    assert [t.loinc for t in hbv] == ["5196-1", "16933-4"]
    with_hbs = suggested_tests(Recommendation.HBV_SCREEN_BEFORE_FIRST_DOSE, ["hbsag", "anti_hbs"])
    assert [t.loinc for t in with_hbs] == ["5196-1", "16935-9"]
    assert suggested_tests(Recommendation.KELL_NEGATIVE_UNITS) == ()


def test_an_alert_as_a_detected_issue() -> None:
    created = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    issue = detected_issue(
        alert(), created, rule_title="Blood bank test", drug_names={"daratumumab_iv": "Daratumumab"}
    )
    DetectedIssue.model_validate(issue)
    assert issue["code"]["coding"] == [
        {"system": RULE_SYSTEM, "code": "bb-serology", "display": "Blood bank test"}
    ]
    assert issue["severity"] == "high" and issue["identifiedDateTime"].startswith("2026-03-02")
    assert issue["implicated"][0]["identifier"]["value"] == "ORD-7"
    assert [m["action"]["coding"][0] for m in issue["mitigation"]] == [
        {"system": RECOMMENDATION_SYSTEM, "code": "DTT_TREATED_REAGENT_CELLS"},
        {"system": RECOMMENDATION_SYSTEM, "code": "KELL_NEGATIVE_UNITS"},
    ]
    assert issue["evidence"][0]["code"][0]["coding"][0]["display"] == "Daratumumab"
    medium = detected_issue(
        alert(severity=Severity.MEDIUM, order="", processing_id="T", drugs=(), evidence=()),
        created,
    )
    assert medium["severity"] == "moderate" and "implicated" not in medium
    assert "evidence" not in medium and medium["meta"]["tag"][0]["code"] == "T"
    bundle = searchset([issue], "https://l.example/fhir", "https://l.example/fhir/DetectedIssue")
    assert bundle["entry"][0]["fullUrl"] == f"https://l.example/fhir/DetectedIssue/{'a' * 24}"


def test_cards_for_every_rule_and_code_fit_the_spec() -> None:
    every = tuple(Recommendation)
    for rule in RuleId:
        for severity in Severity:
            a = alert(rule=rule, severity=severity, recommendations=every)
            text = summary(a, RULE_TITLES[rule.value])
            assert len(text) <= SUMMARY_MAX and text.startswith(RULE_TITLES[rule.value][:20])
            c = card(a, title=RULE_TITLES[rule.value], source_url="u", patient_ref="Patient/p")
            assert c["indicator"] == INDICATOR[severity]
            assert ("overrideReasons" in c) == (severity is not Severity.LOW)
            for suggestion in c["suggestions"]:
                for action in suggestion["actions"]:
                    ServiceRequest.model_validate(action["resource"])
            assert c["selectionBehavior"] == "any"
    assert INDICATOR == {
        Severity.HIGH: "critical",
        Severity.MEDIUM: "warning",
        Severity.LOW: "info",
    }


def test_detail_markdown_escapes_the_alert_text() -> None:
    text = detail(alert())
    assert r"use \*DTT\* cells \[x\]." in text
    assert "- **KELL_NEGATIVE_UNITS**: DTT destroys Kell antigens" in text
    assert "could not match" in detail(alert(), matched=False)
    plain = card(alert(), title="T", source_url="u", patient_ref="Patient/p")
    assert "suggestions" not in plain and "selectionBehavior" not in plain


def test_coding_systems_by_the_names_the_matchers_know() -> None:
    assert system_name("http://loinc.org") == "LN"
    assert system_name("http://www.nlm.nih.gov/research/umls/rxnorm") == "RXNORM"
    assert system_name("http://hl7.org/fhir/sid/ndc") == "NDC"
    assert system_name("https://hosp.example/codes") == "https://hosp.example/codes"
    assert system_name(None) == ""


def test_cds_settings_defaults_are_the_example_file() -> None:
    example = Settings.load(ROOT / "config" / "lisguard.example.yaml")
    assert example.cds.model_dump() == Settings().cds.model_dump() == CdsSettings().model_dump()
    assert not CdsSettings().enabled


def test_cds_on_needs_keys_and_issuers() -> None:
    with pytest.raises(ValidationError, match="jwks"):
        CdsSettings(enabled=True, issuers=["https://ehr.example.org"])
    with pytest.raises(ValidationError, match="issuers"):
        CdsSettings(enabled=True, jwks_url="https://ehr.example.org/jwks")
    with pytest.raises(ValidationError):
        CdsSettings(algorithms=["HS256"])  # type: ignore[list-item]
