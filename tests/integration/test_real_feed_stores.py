"""The real-feed scenarios (identity, merge aliases and links, blood products, placer/filler) on
every store backend: the same alerts as `lisguard check`, the aliases kept in the store, and
the patient view of a retired identifier showing its survivor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lisguard.alerting.summary import patient_summary
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.screening import Screening
from lisguard.services import Ingestor
from lisguard.store.base import Store
from tests.conftest import SAMPLES

SCENARIOS = [
    "20-identity-bare-and-aliased-mrn",
    "21-merge-alias-and-link",
    "22-blood-product-orders",
    "28-placer-filler-one-alert",
    # immunoglobulin therapy: doses, grams, HBV serology and IgG levels in state on every store
    "30-ig-passive-blood-bank",
    "31-ig-passive-serology",
    "32-positive-dat",
    "33-bispecific-prophylaxis",
    "34-low-igg",
    "35-hbv-before-first-dose",
]


def texts(scenario: Path) -> list[str]:
    return [
        t
        for path in sorted(scenario.glob("*.hl7"))
        for t in split_messages(decode_bytes(path.read_bytes()))
    ]


@pytest.mark.parametrize("name", SCENARIOS)
async def test_scenario_on_every_store(store: Store, name: str) -> None:
    scenario = SAMPLES / name
    sites = [scenario / "site.yaml"] if (scenario / "site.yaml").is_file() else []
    kb = load_knowledge_base(sites)
    ingestor = Ingestor(store, kb)
    screening = Screening(kb)
    served, screened = [], []
    for text in texts(scenario):
        result = await ingestor.ingest(text.encode(), text=text)
        assert result.outcome == "accepted", result.error
        served += [(a.id, a.rule.value, a.patient_key, a.order) for a in result.alerts]
        screened += [
            (a.id, a.rule.value, a.patient_key, a.order) for a in screening.screen(text).alerts
        ]
    assert served == screened
    spec = yaml.safe_load((scenario / "expected.yaml").read_text())
    assert [(r, p.partition("^")[0]) for _, r, p, _ in served] == [
        (a["rule"], a["patient"]) for a in spec["alerts"]
    ]


async def test_a_retired_identifier_shows_its_survivor(store: Store) -> None:
    scenario = SAMPLES / "21-merge-alias-and-link"
    kb = load_knowledge_base()
    ingestor = Ingestor(store, kb)
    for text in texts(scenario):
        await ingestor.ingest(text.encode(), text=text)
    retired = await store.get_patient("MRN21002^LKH")
    assert retired is not None and retired.alias_of == "MRN21001^LKH"
    summary = await patient_summary(store, kb, "MRN21002^LKH")
    assert summary is not None
    assert (summary.key, summary.requested) == ("MRN21001^LKH", "MRN21002^LKH")
    assert summary.state is not None and summary.state.merged_from == ["MRN21002^LKH"]
    # the baseline-workup raised under the retired id before the merge is in its history
    assert "baseline-workup" in {r.alert.rule.value for r in summary.alerts}
    linked = await store.get_patient("MRN21004^LKH")
    assert linked is not None and linked.linked == []  # unlinked by the A37
