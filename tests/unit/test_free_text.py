"""Free text read as a blood bank would: negation scope, answers after the term, lists, dated
history, names, regimen shorthand, suspicion. Every phrase is labelled; the figures printed at
the end are the precision and recall of exposure mentions over this set (the closing note of
issue 13 quotes them)."""

from __future__ import annotations

from datetime import datetime

import pytest

from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base

NOW = datetime(2026, 7, 10, 9, 0)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


# (text, drugs the text says the patient is or was on, the date it gives them or None)
POSITIVE = [
    ("Pt on Darzalex Faspro q4wk.", ["daratumumab_sc"], None),
    ("Darzalex IV (daratumumab)", ["daratumumab_iv"], None),
    ("Pt on dara, C3D1 today", ["daratumumab_iv"], None),
    ("dara held this cycle for neutropenia", ["daratumumab_iv"], None),
    ("Dara-VRd C2D8", ["daratumumab_iv"], None),
    ("Pt on DRd cycle 4", ["daratumumab_iv"], None),
    ("Medications: DVd", ["daratumumab_iv"], None),
    ("Medications: Isa-Pd", ["isatuximab_iv"], None),
    ("Started isatuximab-irfc 2026-05-04", ["isatuximab_iv"], None),
    ("Daratumumab discontinued 2019", ["daratumumab_iv"], datetime(2019, 12, 31)),
    ("last dose of daratumumab 03/2025", ["daratumumab_iv"], datetime(2025, 3, 31)),
    ("last dose daratumumab 03/2026", ["daratumumab_iv"], datetime(2026, 3, 31)),
    ("Discontinued daratumumab 3/2026", ["daratumumab_iv"], datetime(2026, 3, 31)),
    ("daratumumab 2019-2021, then lenalidomide", ["daratumumab_iv"], datetime(2021, 12, 31)),
    ("Daratumumab last given 4 weeks ago", ["daratumumab_iv"], datetime(2026, 6, 12, 9, 0)),
    ("Daratumumab stopped Mar 2026", ["daratumumab_iv"], datetime(2026, 3, 31)),
    ("on daratumumab since 2019", ["daratumumab_iv"], None),  # a start date: still on it
    ("daratumumab no longer given, last 2025-11-03", ["daratumumab_iv"], datetime(2025, 11, 3)),
    ("Denies chest pain, daratumumab C3D1 today", ["daratumumab_iv"], None),
    ("No fever (on daratumumab)", ["daratumumab_iv"], None),
    ("Daratumumab: No infusion reaction.", ["daratumumab_iv"], None),
    ("next daratumumab 12/20/2026", ["daratumumab_iv"], None),  # a future date is no last dose
    ("Pt receiving magrolimab (Hu5F9-G4) on trial", ["magrolimab"], None),
]
NEGATIVE = [
    "Denies anti-CD38 therapy (daratumumab/isatuximab).",
    "Denies anti-CD38 therapy (daratumumab, isatuximab).",
    "No daratumumab, isatuximab or elotuzumab",
    "Daratumumab: none",
    "Hx of daratumumab? No",
    "Daratumumab - N",
    "Daratumumab (Darzalex): not given",
    "daratumumab? unknown",
    "No daratumumab history",
    "Results discussed with Dara Nguyen RN",
    "Spoke to Dara at the front desk",
    "Pt watched education DVD",
    "DRD clinic referral",  # no medication context
    "?dara interference",
    "Possible daratumumab interference",
    "r/o daratumumab interference",
    "Please check for daratumumab therapy before workup",
    "Consider daratumumab if relapse",
    "Plan to start daratumumab next week",
    "Recommend extended phenotype before anti-CD38 therapy",  # advice, not a patient's drug
    "Serologic phenotyping is unreliable on anti-CD38 therapy",
]


@pytest.mark.parametrize(("text", "drugs", "dated"), POSITIVE)
def test_mention_counts(kb: KnowledgeBase, text: str, drugs: list[str], dated: datetime) -> None:
    found = kb.mentions(text, now=NOW)
    assert [m.drug.id for m in found] == drugs
    assert found[0].dated == dated


@pytest.mark.parametrize("text", NEGATIVE)
def test_mention_does_not_count(kb: KnowledgeBase, text: str) -> None:
    assert kb.mentions(text, now=NOW) == []


def test_precision_and_recall_over_the_labelled_phrases(kb: KnowledgeBase) -> None:
    true_pos = sum(bool(kb.mentions(t, now=NOW)) for t, _, _ in POSITIVE)
    false_pos = sum(bool(kb.mentions(t, now=NOW)) for t in NEGATIVE)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / len(POSITIVE)
    print(f"free-text mentions: precision {precision:.3f}, recall {recall:.3f} "
          f"({len(POSITIVE)} positive, {len(NEGATIVE)} negative phrases)")
    assert (precision, recall) == (1.0, 1.0)


def test_aliases_count_in_a_pharmacy_segment_without_context(kb: KnowledgeBase) -> None:
    drug = kb.drug_for_text("DARA SC 1800MG")
    assert drug is not None and drug.id == "daratumumab_sc"
    drug = kb.drug_for_text("DRd")
    assert drug is not None and drug.id == "daratumumab_iv"
