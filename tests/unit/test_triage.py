"""The queue's triage (lisguard.domain.triage): which ordered tests mean a transfusion is
waiting, read through the knowledge base's test catalog as the rules read it; the sort key;
what is background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.domain.triage import OrderedTest, TransfusionOrders, is_background, queue_key
from lisguard.settings import DeskSettings, Settings
from tests.conftest import ROOT

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


@pytest.mark.parametrize(
    ("code", "text", "segment", "kind"),
    [
        ("XM2", "CROSSMATCH 2 UNITS", "OBR", "crossmatch"),
        ("1250-0", "", "OBR", "crossmatch"),  # LOINC major crossmatch, no text
        ("BBTS", "TYPE AND SCREEN", "OBR", "type_and_screen"),
        ("", "T&S", "OBR", "type_and_screen"),
        ("34532-2", "", "OBR", "type_and_screen"),  # LOINC type and screen panel
        ("", "PREPARE RBC 2 UNITS", "OBR", "blood_product"),
        ("", "TRANSFUSE RBC 1 UNIT", "OBR", "blood_product"),
        ("RBC", "Red Blood Cells", "BPO", "blood_product"),
        ("E0336V00", "", "BPX", "blood_product"),  # a product not known: taken for red cells
        ("PLT", "Platelets", "BPO", None),
        ("FFP", "Fresh Frozen Plasma", "BPO", None),
        ("", "IMMEDIATE SPIN CROSSMATCH", "OBR", None),  # no AHG phase: nothing for DTT
        ("", "ELECTRONIC CROSSMATCH", "OBR", None),
        ("890-4", "Antibody screen", "OBR", None),  # a work-up, not for a transfusion as such
        ("", "ANTIBODY IDENTIFICATION", "OBR", None),
        ("", "DAT", "OBR", None),
        ("24351-9", "Serum protein electrophoresis", "OBR", None),
        ("", "RBC", "OBR", None),  # a count in an OBR-4, not a product
        ("", "", "", None),  # an alert about a dose: no test
    ],
)
def test_what_means_a_transfusion_is_waiting(
    kb: KnowledgeBase, code: str, text: str, segment: str, kind: str | None
) -> None:
    orders = TransfusionOrders(kb)
    assert orders.kind(OrderedTest(code, text, segment)) == kind
    assert orders(OrderedTest(code, text, segment)) is (kind is not None)


def test_a_site_code_for_the_crossmatch_counts(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("tests:\n  - id: crossmatch\n    local_codes: [XMLOCAL]\n")
    orders = TransfusionOrders(load_knowledge_base([site]))
    assert orders.kind(OrderedTest("XMLOCAL", "", "OBR")) == "crossmatch"
    assert TransfusionOrders(load_knowledge_base()).kind(OrderedTest("XMLOCAL", "", "OBR")) is None


def alert(
    patient: str,
    *,
    rule: RuleId = RuleId.BB_SEROLOGY,
    severity: Severity = Severity.HIGH,
    event_time: datetime | None = T0,
    order_text: str = "",
    where: str = "OBR-4",
) -> Alert:
    return Alert(
        id=alert_id(patient, rule, "O1"),
        rule=rule,
        patient=patient,
        message="M1",
        order="O1",
        severity=severity,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="text",
        event_time=event_time,
        order_text=order_text,
        evidence=(EvidenceItem(message="M1", location=where, text=order_text),),
    )


def test_the_order_is_severity_then_transfusion_then_newest_event(kb: KnowledgeBase) -> None:
    orders = TransfusionOrders(kb)
    created = T0 + timedelta(hours=1)
    cases = {
        "medium-crossmatch": alert(
            "P1", severity=Severity.MEDIUM, order_text="CROSSMATCH", event_time=T0
        ),
        "high-screen-new": alert(
            "P2", order_text="ANTIBODY SCREEN", event_time=T0 + timedelta(minutes=30)
        ),
        "high-crossmatch-old": alert(
            "P3", order_text="CROSSMATCH", event_time=T0 - timedelta(hours=5)
        ),
        "high-crossmatch-new": alert("P4", order_text="CROSSMATCH", event_time=T0),
        "low": alert("P5", severity=Severity.LOW, event_time=T0 + timedelta(hours=2)),
    }
    keys = {name: queue_key(a, created, orders(OrderedTest.of(a))) for name, a in cases.items()}
    assert sorted(keys, key=keys.__getitem__, reverse=True) == [
        "high-crossmatch-new",
        "high-crossmatch-old",
        "high-screen-new",
        "medium-crossmatch",
        "low",
    ]


def test_the_key_has_a_total_order_and_reads_times_as_the_stores_do() -> None:
    naive = alert("P1", event_time=datetime(2026, 12, 3, 12, 0))  # sender's local: taken as UTC
    assert queue_key(naive, T0, False).urgent_at == T0
    # no event time: when it was raised
    undated = alert("P2", event_time=None)
    assert queue_key(undated, T0 - timedelta(days=1), False).urgent_at == T0 - timedelta(days=1)
    # same place in every respect but the id: the id decides, so a cursor is one place
    a, b = alert("P3"), alert("P4")
    ka, kb_ = queue_key(a, T0, False), queue_key(b, T0, False)
    assert ka != kb_ and (ka < kb_) == (a.id < b.id)


def test_background_is_an_old_baseline_reminder_only() -> None:
    before = T0 - timedelta(days=7)
    old = alert("P1", rule=RuleId.BASELINE_WORKUP, event_time=T0 - timedelta(days=8))
    recent = alert("P2", rule=RuleId.BASELINE_WORKUP, event_time=T0 - timedelta(days=6))
    old_screen = alert("P3", event_time=T0 - timedelta(days=30))
    assert is_background(old, T0, before)
    assert not is_background(recent, T0, before)
    assert not is_background(old_screen, T0, before)  # never: bench work stays in the queue
    assert not is_background(old, T0, None)  # desk.background_after_days: 0


def test_the_example_settings_show_the_desk_defaults() -> None:
    example = Settings.load(ROOT / "config" / "lisguard.example.yaml")
    assert example.desk == DeskSettings() == Settings().desk
    assert DeskSettings().background_after_days == 7
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        DeskSettings(background_after_days=-1)
