"""Property fuzzing of the HL7 reader: whatever the bytes, the documented outcome or nothing.

- decode_bytes, split_messages, peek_header, read_batch and build_batch_ack never raise, and a
  batch holds the messages split_messages cuts;
- parse returns a Message or raises HL7ReadError, nothing else;
- to_clinical reads any Message that parse returned without raising;
- the whole ingest path answers every input with an ACK carrying an MSA (a batch: one batch ACK
  with an MSA per message), unless MSH-15/16 ask for none.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import tracemalloc

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.hl7v2.ack import Header, build_ack, peek_header
from lisguard.hl7v2.batch import build_batch_ack, read_batch
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import HL7ReadError, Message, parse
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore
from tests.conftest import corpus_files
from tests.fuzz.common import EXAMPLES, mutations, no_hang

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no per-example timing: the hang watchdog catches what never ends
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces of real messages, so that generated text gets past the first checks of the reader.
TOKENS = [
    "MSH|^~\\&|",
    "MSH|",
    "MSH",
    "|",
    "^",
    "~",
    "\\",
    "&",
    "#",
    "\r",
    "\n",
    "\r\n",
    "PID|1||",
    "PV1|",
    "ORC|NW|",
    "OBR|1|",
    "OBX|1|TX|",
    "OBX|1|ST|",
    "RXA|0|1|",
    "RXE|",
    "RXO|",
    "NTE|1||",
    "MRG|",
    "TQ1|",
    "FHS|",
    "BHS|",
    "BTS|",
    "FTS|",
    "ORM^O01",
    "ORU^R01",
    "RAS^O17",
    "RDE^O11",
    "ADT^A40",
    "VXU^V04",
    "OML^O21",
    "890-4^Antibody screen^LN",
    "J9145^daratumumab^HCPCS",
    "57894-0503-01^DARZALEX FASPRO^NDC",
    "Pt on Darzalex q4wk",
    "no daratumumab",
    "IgG kappa",
    "panreactive",
    "20260301093000",
    "2026",
    "-0500",
    "2.5.1",
    "P",
    "AL",
    "ER",
    "NE",
    "UNICODE UTF-8",
    "8859/1",
    "\\X0D\\",
    "\\E\\",
    "\\F\\",
    "\\H\\",
    "\\.br\\",
    "\ufeff",
    "\x00",
    "\x0b",
    "\x1c",
    " ",
    "é",
    "\u4e2d",
]

hl7ish = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), max_size=120).map(
    "".join
)


@functools.cache
def corpus_messages() -> list[bytes]:
    out = []
    for path in corpus_files():
        out.extend(t.encode() for t in split_messages(decode_bytes(path.read_bytes())))
    return out


@st.composite
def mutated_corpus(draw: st.DrawFn) -> bytes:
    messages = corpus_messages()
    message = draw(st.sampled_from(messages))
    rng = random.Random(draw(st.integers(0, 2**32)))
    _, data = draw(st.sampled_from(mutations(message, rng)))
    return data


@functools.cache
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def read_everything(text: str) -> None:
    """The reader's contract on one text: nothing but HL7ReadError may come out."""
    peek_header(text)
    for piece in split_messages(text):
        peek_header(piece)
        try:
            message = parse(piece)
        except HL7ReadError:
            continue
        assert isinstance(message, Message)
        message.message_type, message.control_id, message.version  # noqa: B018
        to_clinical(message)
    with contextlib.suppress(HL7ReadError):
        parse(text)
    batch = read_batch(text)
    if batch is not None:
        assert batch.messages == split_messages(text) or not batch.messages
        acks = [build_ack(peek_header(m) or Header(), "AA") for m in batch.messages]
        build_batch_ack(batch, acks)


# Found by atheris: "MSH" alone on its line made peek_header (the NAK's header) raise.
MSH_ALONE = b"MSH\rPID|1||X"


@FUZZ
@given(st.binary(max_size=4096))
@example(MSH_ALONE)
def test_any_bytes(data: bytes) -> None:
    with no_hang():
        text = decode_bytes(data)
        assert isinstance(text, str)
        read_everything(text)


@FUZZ
@given(hl7ish)
def test_hl7_like_text(text: str) -> None:
    with no_hang():
        read_everything(text)
        read_everything("MSH|^~\\&|" + text)


@FUZZ
@given(mutated_corpus())
def test_mutated_corpus_messages(data: bytes) -> None:
    with no_hang():
        read_everything(decode_bytes(data))


@FUZZ
@given(st.one_of(hl7ish.map(str.encode), mutated_corpus(), st.binary(max_size=2048)))
@example(MSH_ALONE)
def test_ingest_always_answers(data: bytes) -> None:
    """The service path (memory store): every input gets an ACK with an MSA segment; a batch,
    one batch ACK with an MSA per message; nothing only when an enhanced-mode MSH-15/16 asks
    for nothing (NE, ER on success: HL7 table 0155, no longer overridden by default)."""

    async def run() -> None:
        store = MemoryStore()
        await store.open()
        result = await Ingestor(store, kb()).ingest(data, peer="fuzz")
        assert result.outcome in ("accepted", "ignored", "duplicate", "error", "rejected", "batch")
        if result.outcome == "batch":
            [answer] = result.responses
            names = [segment[:3] for segment in answer.split("\r")]
            assert names[0] in ("FHS", "BHS") and {"BTS", "FTS"} & set(names), answer
            assert names.count("MSA") == len(result.parts), answer
            return
        if not result.responses:
            header = peek_header(decode_bytes(data))
            assert header is not None and header.enhanced, result
        assert all("\rMSA|" in r or "\rMSA" in r for r in result.responses), result.responses

    with no_hang():
        asyncio.run(run())


def test_pathological_inputs_end_and_stay_small() -> None:
    """Long runs of delimiters and escapes: linear time (no hang) and bounded memory."""
    size = 300_000
    cases = [
        "MSH|^~\\&|" + "^" * size,
        "MSH|^~\\&|" + "\\" * size,
        "MSH|^~\\&|" + "~" * size,
        "MSH|^~\\&|" + "|" * size,
        "MSH|^~\\&|A|B|C|D|20260301||ORM^O01|1|P|2.5.1\rNTE|1||" + "\\X0D\\" * (size // 5),
        "MSH|^~\\&|A|B|C|D|20260301||ORM^O01|1|P|2.5.1\r" + "OBX|1|TX|||x\r" * (size // 13),
        "\r" * size,
        "MSH" * (size // 3),
    ]
    for text in cases:
        tracemalloc.start()
        try:
            with no_hang():
                read_everything(text)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # measured: at most ~50 bytes per input byte (77k OBX segments as objects); what must
        # never happen is growth with the square of the input
        assert peak < 100 * size, (text[:20], peak)
