"""`lisguard check` (Screening, no store) must answer as `lisguard serve` (Ingestor and its
store) would: the same outcome and the same alerts for every message, in order. Checked on every
sample scenario, the corpus, a slice of the benchmark feed with resends, and the edge cases of
duplicate detection (dead letters, refusals, a control id reused for other content)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks.feed import FeedBuilder
from lisguard import app
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.intake import IngestPolicy
from lisguard.screening import Screening
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore
from tests.conftest import SAMPLES, corpus_files


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


async def both(
    kb: KnowledgeBase, texts: Sequence[str], policy: IngestPolicy | None = None
) -> list[tuple[Any, ...]]:
    """Feed the texts through serve's path and check's path; assert they agree; return the
    outcomes (for the caller to check that the case was exercised)."""
    store = MemoryStore()
    await store.open()
    ingestor = Ingestor(store, kb, policy)
    screening = Screening(kb, policy)
    outcomes = []
    for index, text in enumerate(texts):
        served = await ingestor.ingest(text.encode("utf-8"), text=text)
        screened = screening.screen(text)
        served_view = (
            served.outcome,
            served.control_id,
            [a.to_json_dict() for a in served.alerts],
            served.error,
        )
        screened_view = (
            screened.outcome,
            screened.control_id,
            [a.to_json_dict() for a in screened.alerts],
            screened.error,
        )
        assert served_view == screened_view, (index, text[:300])
        outcomes.append(served_view)
    await store.close()
    return outcomes


def _texts(paths: Sequence[Any]) -> list[str]:
    texts: list[str] = []
    for path in paths:
        texts.extend(split_messages(decode_bytes(path.read_bytes())))
    return texts


async def test_every_sample_scenario(kb: KnowledgeBase) -> None:
    alerts = 0
    for scenario in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        outcomes = await both(kb, _texts(sorted(scenario.glob("*.hl7"))))
        alerts += sum(len(o[2]) for o in outcomes)
    assert alerts > 10


async def test_the_corpus_as_one_feed(kb: KnowledgeBase) -> None:
    outcomes = await both(kb, _texts(corpus_files()))
    assert {o[0] for o in outcomes} >= {"accepted", "ignored"}


async def test_a_feed_slice_with_resends(kb: KnowledgeBase) -> None:
    texts = list(FeedBuilder(3_000).messages(2_000, "S"))
    texts += texts[::7]  # an interface engine replaying part of its queue
    outcomes = await both(kb, texts)
    assert sum(o[0] == "duplicate" for o in outcomes) == len(texts[2_000:])
    assert sum(len(o[2]) for o in outcomes) > 5


HEAD = "MSH|^~\\&|LAB|RVH|LG|RVH|20260301||{type}|{cid}|{pid}|2.5.1"
SCREEN = "\rPID|1||MRN1^^^RVH^MR\rORC|NW|P{n}\rOBR|1|P{n}||890-4^Antibody screen^LN|||20260301"
DARA = "\rPID|1||MRN1^^^RVH^MR\rORC|NW|RX1\rRXE|^^^20260301|J9145^daratumumab^HCPCS"


def msg(cid: str, body: str, *, type_: str = "ORM^O01", pid: str = "P", n: int = 1) -> str:
    return HEAD.format(type=type_, cid=cid, pid=pid) + body.format(n=n)


async def test_duplicates_refusals_dead_letters_and_reused_ids(kb: KnowledgeBase) -> None:
    texts = [
        msg("RX1", DARA, type_="RDE^O11"),
        msg("S1", SCREEN),  # alert: screen for a patient on daratumumab
        msg("S1", SCREEN),  # resend: duplicate
        msg("S1", SCREEN, n=2),  # same control id, other content: processed again
        msg("S1", SCREEN),  # the first content again: the last stored differs, so not a dup
        msg("T1", SCREEN, pid="X"),  # processing id refused (AR)
        msg("T1", SCREEN, pid="X"),  # refused again: serve never replays a refusal
        "MSH|^~\\&|LAB|RVH|LG|RVH|20260301||ORM^O01|D1|P|2.5.1\rPID|1||M\x00\rOBR|1|",
        msg("D1", SCREEN, n=3),  # same key as the dead letter, readable now
        msg("X1", SCREEN, n=4),
        msg("X1", SCREEN, n=4, pid="X"),  # refused, stored under the same key...
        msg("X1", SCREEN, n=4),  # ...so this is no longer a resend of the last one stored
        msg("Q1", "\rQRD|1", type_="QBP^Q11"),  # unknown type: ignored
        msg("Q1", "\rQRD|1", type_="QBP^Q11"),
        "not HL7 at all",
        msg("", SCREEN, n=5),  # no control id: a dead letter (AE 101), filed under no key
        msg("", SCREEN, n=5),  # ...so the same bytes again are not a duplicate
        msg("E1", SCREEN, type_="", n=6),  # no message type: dead letter under its key
        msg("E1", SCREEN, type_="", n=6),  # an AE always goes back: a resend replays it
    ]
    outcomes = await both(kb, texts)
    words = [o[0] for o in outcomes]
    assert "duplicate" in words and "rejected" in words and "ignored" in words
    assert "error" in words and sum(len(o[2]) for o in outcomes) >= 1
    policy = IngestPolicy(type_actions={"QBP": "reject"}, always_reply=False)
    await both(kb, texts, policy)
    enhanced = [t.replace("|2.5.1", "|2.5.1|||NE|NE") for t in texts]
    never_acked = await both(kb, enhanced, policy)  # no ACK stored: a resend is not a dup
    assert "duplicate" not in [o[0] for o in never_acked[:3]]


async def test_test_messages_keep_their_own_state_in_check_as_in_serve(kb: KnowledgeBase) -> None:
    """A site taking T: serve keeps a test message's patient state apart (state_key); check's
    dict must too, or the two would disagree on which screens alert."""
    texts = [
        msg("RX1", DARA, type_="RDE^O11", pid="T"),  # a test dose
        msg("S1", SCREEN),  # production: no real exposure, no alert
        msg("S2", SCREEN, pid="T", n=2),  # test: alerts, marked test
        msg("RX2", DARA, type_="RDE^O11"),  # the real first dose: baseline-workup
        msg("S3", SCREEN, n=3),  # production alerts now
        msg("S4", SCREEN, pid="D", n=4),  # D: refused here
    ]
    outcomes = await both(kb, texts, IngestPolicy(processing_ids=frozenset({"P", "T"})))
    alerts = [[(a["rule"], a["test"]) for a in o[2]] for o in outcomes]
    assert alerts == [
        [("baseline-workup", True)],
        [],
        [("bb-serology", True)],
        [("baseline-workup", False)],
        [("bb-serology", False)],
        [],
    ]
    assert outcomes[-1][0] == "rejected"


def test_check_reads_a_big_file_in_chunks_as_at_once(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lisguard check` reads a file a chunk at a time (lisguard.hl7v2.files): its alerts and
    error lines, numbered across chunks, are those of the file read at once."""
    texts = list(FeedBuilder(3_000).messages(1_500, "F"))
    texts += texts[::9]  # resends
    texts.insert(700, "MSH|^~")  # an unreadable message in the middle
    path = tmp_path / "feed.hl7"
    path.write_bytes("\r\n".join(text.replace("\r", "\r\n") for text in texts).encode())
    whole = split_messages(decode_bytes(path.read_bytes()))
    expected = [
        json.dumps(alert.to_json_dict())
        for result in Screening(kb).screen_all(whole)
        for alert in result.alerts
    ]
    assert len(expected) > 5

    def run(chunk: int) -> tuple[list[str], list[dict[str, Any]]]:
        monkeypatch.setattr(app, "CHECK_CHUNK", chunk)
        out, err = io.StringIO(), io.StringIO()
        assert app.check([path], [], out, err) == 0
        return out.getvalue().splitlines(), [json.loads(x) for x in err.getvalue().splitlines()]

    for chunk in (1 << 20, 4096, 333):
        alerts, errors = run(chunk)
        assert alerts == expected, chunk
        assert [(e["index"], e["outcome"]) for e in errors] == [(701, "error")], chunk
