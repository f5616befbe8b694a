"""Two `lisguard serve` replicas on one PostgreSQL database give the alerts one process gives.

Each patient's feed races across both replicas:
- phase 1, all at once: daratumumab dose 1 (2025-01) to replica A, dose 2 (2026-01) to
  replica B, an isatuximab dose (2025-12) to replica A on a second connection;
- phase 2, all at once, after phase 1 is ACKed: antibody screen X (2025-03) to A, antibody
  screen Y (2026-03) to B, and X again to B (a resend arriving through the other replica).

X alerts only if dose 1 was kept (before it no exposure had started), Y only if dose 2 was kept
(dose 1 + 6 months is long over), and Y names isatuximab only if that dose was kept: a lost
exposure changes the alert set. A double alert shows as a repeated key or a second
`alert.raised` audit event. The expected set comes from `lisguard check` over the same feed in
one order, and the test first proves that the racing phase-1 order does not change it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from lisguard.domain.alerts import Alert, RuleId
from lisguard.store import open_store
from lisguard.transport.mllp import msa_code
from tests.e2e.serve_process import (
    BIN,
    ServeProcess,
    fresh_schema,
    with_query,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PATIENTS = 24

AlertKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


def dose(p: int, n: int, when: str, drug: str) -> str:
    return (
        f"MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|{when}||RAS^O17|RX{p}-{n}|P|2.5.1\r"
        f"PID|1||RP{p:04d}^^^HOSP^MR||DOE^JANE\r"
        f"ORC|RE|RXO{p}-{n}\r"
        f"RXA|0|1|{when}|{when}|{drug}|1800|mg||||||||||||CP\r"
    )


def screen(p: int, o: str, when: str) -> str:
    return (
        f"MSH|^~\\&|LAB|HOSP|LISGUARD|BB|{when}||ORM^O01|LAB{p}-{o}|P|2.5.1\r"
        f"PID|1||RP{p:04d}^^^HOSP^MR||DOE^JANE\r"
        f"ORC|NW|TS{p}-{o}\r"
        f"OBR|1|TS{p}-{o}||890-4^Antibody screen^LN|||{when}\r"
    )


def patient_feed(p: int) -> tuple[list[str], list[str]]:
    """(phase 1, phase 2) messages of one patient."""
    phase1 = [
        dose(p, 1, "20250101090000", "J9145^daratumumab^HCPCS"),
        dose(p, 2, "20260101090000", "J9145^daratumumab^HCPCS"),
        dose(p, 3, "20251201090000", "J9227^isatuximab^HCPCS"),
    ]
    phase2 = [screen(p, "X", "20250301080000"), screen(p, "Y", "20260301080000")]
    return phase1, phase2


def check_alerts(tmp_path: Path, name: str, messages: list[str]) -> Counter[AlertKey]:
    """`lisguard check` (one process, in-memory store) over the messages in this order."""
    path = tmp_path / f"{name}.hl7"
    path.write_text("\n".join(m.replace("\r", "\n") for m in messages))
    done = subprocess.run([str(BIN), "check", str(path)], capture_output=True, check=True)
    return Counter(
        alert_key(Alert.model_validate(a)) for a in map(json.loads, done.stdout.splitlines())
    )


def alert_key(alert: Alert) -> AlertKey:
    """What must not depend on which replica saw what first. The baseline alert names the drug
    of whichever first dose arrived first, so its drugs are left out; every other alert names
    the drugs active at its order time, which is what a lost exposure would change."""
    drugs = () if alert.rule is RuleId.BASELINE_WORKUP else tuple(sorted(alert.drugs))
    return (
        alert.rule.value,
        alert.patient,
        alert.order,
        drugs,
        tuple(sorted(r.value for r in alert.recommendations)),
    )


async def test_two_replicas_alert_like_one_process(tmp_path: Path, pg_dsn: str) -> None:
    feeds = [patient_feed(p) for p in range(PATIENTS)]
    in_order = [m for phase1, phase2 in feeds for m in (*phase1, *phase2)]
    other_order = [m for phase1, phase2 in feeds for m in (*reversed(phase1), *reversed(phase2))]
    expected = check_alerts(tmp_path, "in_order", in_order)
    # the racing order inside a phase must not matter, or "equal to one process" means nothing
    assert check_alerts(tmp_path, "other_order", other_order) == expected
    assert sum(expected.values()) == PATIENTS * 3  # baseline, X and Y for every patient
    assert sum("isatuximab_iv" in k[3] for k in expected) == PATIENTS  # Y names it
    assert all(n == 1 for n in expected.values())

    async with fresh_schema(pg_dsn, "lisguard_replicas") as (schema, _admin):
        url = with_query(pg_dsn, search_path=schema)
        a = ServeProcess(url, tmp_path / "a.log")
        b = ServeProcess(url, tmp_path / "b.log")
        a.start()
        b.start()  # both start together: the schema migration is serialised between them
        try:
            await asyncio.gather(a.wait_ready(), b.wait_ready())

            async def one_patient(phase1: list[str], phase2: list[str]) -> list[str]:
                acks = await asyncio.gather(
                    a.send([phase1[0]]), b.send([phase1[1]]), a.send([phase1[2]])
                )
                acks += await asyncio.gather(
                    a.send([phase2[0]]), b.send([phase2[1]]), b.send([phase2[0]])
                )
                return [ack for batch in acks for ack in batch]

            results = await asyncio.gather(*(one_patient(*f) for f in feeds))
            assert a.terminate() == 0
            assert b.terminate() == 0
        finally:
            a.kill()
            b.kill()

        codes = Counter(msa_code(ack) for acks in results for ack in acks)
        assert codes == {"AA": PATIENTS * 6}, codes  # the resend of X is a duplicate: AA too

        store = open_store(url)
        await store.open()
        try:
            stored = await store.list_alerts(limit=10_000)
            audit = await store.list_audit(limit=100_000)
            messages = await store.count_messages()
        finally:
            await store.close()

    got = Counter(alert_key(s.alert) for s in stored)
    assert got == expected
    raised = Counter(e.event.subject for e in audit if e.event.kind == "alert.raised")
    assert sorted(raised) == sorted(s.alert.id for s in stored)
    assert set(raised.values()) == {1}  # no alert announced by both replicas
    assert messages == PATIENTS * 5  # the resend was recognised, not stored twice
