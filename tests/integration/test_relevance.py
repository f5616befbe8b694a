"""`may_touch_state` lets serve and check skip translating a message. It may say "no" only where
`touches_state(to_clinical(message))` is False: checked on every sample scenario, every corpus
message, a slice of the benchmark feed, and generated messages built to sit on the edges (known
codes in either triplet, text value types spelled oddly, escapes, notes, merges, drugs)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.feed import FeedBuilder
from lisguard.domain.engine import touches_state
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import HL7ReadError, Message, parse
from lisguard.hl7v2.relevance import Relevance, may_touch_state
from tests.conftest import SAMPLES, corpus_files


@functools.cache
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def _messages(texts: list[str]) -> Iterator[Message]:
    for text in texts:
        try:
            yield parse(text)
        except HL7ReadError:
            continue


@functools.cache
def shared() -> Relevance:
    """One instance for the whole module, so that its cache answers too."""
    return Relevance(kb())


def _check(message: Message) -> tuple[bool, bool]:
    maybe = may_touch_state(message, kb())
    assert shared().may_touch_state(message) == maybe
    touches = touches_state(to_clinical(message), kb())
    assert maybe or not touches, message.to_er7()[:400]
    return maybe, touches


def _file_texts() -> list[str]:
    texts = []
    for path in [*sorted(SAMPLES.rglob("*.hl7")), *corpus_files()]:
        texts.extend(split_messages(decode_bytes(path.read_bytes())))
    return texts


def test_samples_and_corpus() -> None:
    seen = [_check(m) for m in _messages(_file_texts())]
    assert sum(t for _, t in seen) > 20  # scenarios that matter were read...
    assert sum(not m for m, _ in seen) > 20  # ...and many were rightly skipped


def test_benchmark_feed() -> None:
    seen = [_check(m) for m in _messages(list(FeedBuilder(5_000).messages(3_000, "R")))]
    touched = sum(t for _, t in seen)
    skipped = sum(not m for m, _ in seen)
    assert touched > 50
    assert skipped > len(seen) // 2  # the point of it: most of a feed is skipped


# -- generated messages on the edges

KNOWN_CODES = [
    "890-4^Antibody screen^LN",
    "BBTS^TYPE AND SCREEN^L",
    "CBC^COMPLETE BLOOD COUNT^L^890-4^Antibody screen^LN",  # known only in the alternate
    "XM^CROSSMATCH AHG^L",
    "IFE^IMMUNOFIXATION^L",
    "^Antibody screen",
    "^KELL ANTIGEN TYPING",
    "WBC^WHITE BLOOD CELLS^L",
    "HGB^HEMOGLOBIN^L",
    "K^POTASSIUM^L",
    "89\\E\\0-4^Antibody \\T\\ screen^LN",
    "890-4&x^Antibody screen~ABSC^screen^L",
]
VALUE_TYPES = ["NM", "TX", "tx", " ST ", "FT", "CWE", "T&X", "\\X54\\X", "S\\E\\T", "ST~NM", ""]
VALUES = ["6.1", "Pt on Darzalex q4wk", "no daratumumab", "NEG", "panreactive", "IgG kappa", ""]
EXTRA = [
    "NTE|1||Pt on daratumumab",
    "NTE|1||",
    "MRG|MRN9^^^RVH^MR",
    "RXE|^^^20260301|J9145^daratumumab^HCPCS",
    "RXA|0|1|20260301||57894-0503-01^DARZALEX FASPRO^NDC",
    "RXO|OTHER^other drug^L",
    "PV1|1|O|4W",
    "TQ1|||||||20260301",
]


@st.composite
def edge_messages(draw: st.DrawFn) -> str:
    trigger = draw(st.sampled_from(["ORU^R01", "ORM^O01", "OML^O21", "ADT^A40", "RDE^O11"]))
    segments = [
        f"MSH|^~\\&|LAB|RVH|LISGUARD|RVH|20260301||{trigger}|C1|P|2.5.1",
        "PID|1||MRN1^^^RVH^MR||DOE^JANE",
    ]
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["ORC", "OBR", "OBX", "EXTRA"]))
        if kind == "ORC":
            segments.append(f"ORC|{draw(st.sampled_from(['NW', 'RE', 'CA']))}|P1")
        elif kind == "OBR":
            info = draw(st.sampled_from(["", "Pt on Darzalex", " "]))
            code = draw(st.sampled_from(KNOWN_CODES))
            segments.append(f"OBR|1|P1||{code}|||20260301||||||{info}")
        elif kind == "OBX":
            vtype = draw(st.sampled_from(VALUE_TYPES))
            code = draw(st.sampled_from(KNOWN_CODES))
            value = draw(st.sampled_from(VALUES))
            segments.append(f"OBX|1|{vtype}|{code}||{value}||||||F")
        else:
            segments.append(draw(st.sampled_from(EXTRA)))
    return "\r".join(segments)


_HEAD = "MSH|^~\\&|LAB|RVH|LG|RVH|20260301||ORU^R01|C1|P|2.5.1\rPID|1||MRN1^^^RVH^MR\r"
_CBC = "OBR|1|P1||CBC^COMPLETE BLOOD COUNT^L\r"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_messages())
@example(_HEAD + _CBC + "OBX|1|NM|WBC^WBC^L^890-4^Antibody screen^LN||6.1")  # alternate only
@example(_HEAD + "OBR|1|P1||CBC^CBC^L^890-4^Antibody screen^LN")
@example(_HEAD + _CBC + "OBX|1| tx |NOTE^NOTE^L||Pt on Darzalex")  # type read stripped
@example(_HEAD + _CBC + "OBX|1|\\X54\\X|NOTE^NOTE^L||Pt on Darzalex")  # type escaped
@example(_HEAD + "OBX|1|ST|NOTE^NOTE^L||on daratumumab")  # free text outside any order
@example(_HEAD + "OBR|1|P1||CBC^CBC^L|||20260301||||||Pt on Darzalex")  # OBR-13
def test_generated_messages_on_the_edges(text: str) -> None:
    messages = list(_messages([text]))
    assert messages, text
    for message in messages:
        _check(message)


def test_a_cbc_is_skipped_and_a_screen_or_a_note_is_not() -> None:
    base = "MSH|^~\\&|LAB|RVH|LG|RVH|20260301||ORU^R01|C1|P|2.5.1\rPID|1||MRN1^^^RVH^MR\r"
    cbc = parse(base + "OBR|1|P1||CBC^COMPLETE BLOOD COUNT^L\rOBX|1|NM|WBC^WBC^L||6.1")
    screen = parse(base + "OBR|1|P1||890-4^Antibody screen^LN\rOBX|1|CWE|890-4^ABSC^LN||NEG")
    note = parse(base + "OBR|1|P1||CBC^COMPLETE BLOOD COUNT^L\rNTE|1||on daratumumab")
    assert not may_touch_state(cbc, kb())
    assert may_touch_state(screen, kb())
    assert may_touch_state(note, kb())
