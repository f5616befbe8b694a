"""Every scenario of hl7_samples/ raises exactly the alerts its expected.yaml lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lisguard.domain.alerts import Alert
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import parse
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore
from tests.conftest import SAMPLES

SCENARIOS = sorted(p for p in SAMPLES.iterdir() if (p / "expected.yaml").is_file())


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 17


def site_files(scenarios: list[Path]) -> list[Path]:
    """A scenario may carry its site's settings (site.yaml, a knowledge site file)."""
    return [s / "site.yaml" for s in scenarios if (s / "site.yaml").is_file()]


async def run_feed(
    files: list[Path], sites: list[Path] | None = None
) -> tuple[list[Alert], MemoryStore, dict[str, set[str]]]:
    store = MemoryStore()
    await store.open()
    kb = load_knowledge_base(sites or [])
    ingestor = Ingestor(store, kb)
    alerts: list[Alert] = []
    keys: dict[str, set[str]] = {}  # PID-3.1 -> patient keys seen
    for path in files:
        for text in split_messages(decode_bytes(path.read_bytes())):
            patient = to_clinical(parse(text), kb.identity).patient
            if patient is not None:
                keys.setdefault(patient.id, set()).add(patient.key)
            result = await ingestor.ingest(text.encode(), text=text, peer=path.name)
            assert result.outcome in ("accepted", "ignored", "duplicate"), (path, result.error)
            alerts.extend(result.alerts)
    return alerts, store, keys


def as_expected(alert: Alert) -> dict[str, Any]:
    got: dict[str, Any] = {
        "rule": alert.rule.value,
        "patient": alert.patient,
        "message": alert.message,
        "recommendations": sorted(r.value for r in alert.recommendations),
        "severity": alert.severity.value,
        "audience": alert.audience.value,
    }
    if alert.rule.value != "baseline-workup":
        got["order"] = alert.order
    return got


def normalise(expected: dict[str, Any]) -> dict[str, Any]:
    out = dict(expected)
    out["recommendations"] = sorted(out["recommendations"])
    out.pop("order", None) if out["rule"] == "baseline-workup" else None
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
async def test_scenario(scenario: Path) -> None:
    spec = yaml.safe_load((scenario / "expected.yaml").read_text())
    alerts, store, keys = await run_feed(sorted(scenario.glob("*.hl7")), site_files([scenario]))
    assert [as_expected(a) for a in alerts] == [normalise(e) for e in spec["alerts"] or []]
    for mrn, want in (spec.get("patients") or {}).items():
        states = [await store.get_patient(k) for k in sorted(keys.get(mrn, ()))]
        found = [s for s in states if s is not None]
        state = found[0] if found else None
        if "drugs" in want:
            got_drugs = sorted(state.exposures) if state else []
            assert got_drugs == sorted(want["drugs"]), mrn
        if state is None:
            continue
        rbc = {"daratumumab_iv", "daratumumab_sc", "isatuximab_iv", "isatuximab_sc"}
        spep = rbc | {"elotuzumab"}
        if "k_positive" in want:
            assert state.k_positive == want["k_positive"], mrn
        if "pretreatment_phenotype" in want:
            assert state.has_pretreatment_typing(rbc) == want["pretreatment_phenotype"], mrn
        if "mprotein_isotype" in want:
            assert state.own_isotype(spep) == want["mprotein_isotype"], mrn


async def test_all_scenarios_as_one_feed_give_the_same_alerts() -> None:
    """Scenarios use distinct patients and keys, so one interleaved feed gives the union."""
    expected = []
    for scenario in SCENARIOS:
        spec = yaml.safe_load((scenario / "expected.yaml").read_text())
        expected.extend(normalise(e) for e in spec["alerts"] or [])
    files = [f for s in SCENARIOS for f in sorted(s.glob("*.hl7"))]
    alerts, _, _ = await run_feed(files, site_files(SCENARIOS))
    key = lambda d: sorted(d.items())  # noqa: E731
    assert sorted(map(key, map(as_expected, alerts))) == sorted(map(key, expected))
