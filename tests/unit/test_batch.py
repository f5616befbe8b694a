"""Batches (HL7 v2 ch. 2 batch protocol): reading the FHS/BHS/BTS/FTS envelope, and the batch of
ACKs that answers one, read back with python-hl7 (`hl7.parse_file`, `hl7.parse_batch`)."""

from __future__ import annotations

import hl7
import pytest

from lisguard.hl7v2.ack import AckError, build_ack, peek_header, responses
from lisguard.hl7v2.batch import ENVELOPE_ERROR, build_batch_ack, is_batch, read_batch
from lisguard.hl7v2.framing import split_messages

MSG = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR\r"
    "ORC|NW|ORD{cid}\r"
)
FHS = "FHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||FILE7\r"
BHS = "BHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||BATCH7\r"


def file_of(*cids: str, bts: str = "BTS|{n}\r", fhs: bool = True) -> str:
    body = BHS + "".join(MSG.format(cid=c) for c in cids) + bts.format(n=len(cids))
    return FHS + body + "FTS|1\r" if fhs else body


def acks_for(messages: list[str]) -> list[str]:
    return [build_ack(peek_header(m), "AA") for m in messages]  # type: ignore[arg-type]


def test_a_file_is_read_and_cut_as_split_messages_cuts_it() -> None:
    text = file_of("A1", "A2", "A3")
    batch = read_batch(text)
    assert batch is not None
    assert batch.messages == split_messages(text)
    assert len(batch.messages) == 3
    assert batch.control_id == "BATCH7"
    assert batch.all_problems() == []


@pytest.mark.parametrize(
    "text",
    [
        MSG.format(cid="X1"),
        MSG.format(cid="X1") + MSG.format(cid="X2"),
        "not hl7 at all\rBTS|1",  # a stray trailer and no message: for parse to reject
        "",
    ],
)
def test_what_is_not_a_batch(text: str) -> None:
    assert read_batch(text) is None


def test_line_ends_mllp_bytes_and_a_bom_are_read_like_split_messages() -> None:
    text = "\ufeff\x0b" + file_of("L1", "L2").replace("\r", "\r\n") + "\x1c\r"
    batch = read_batch(text)
    assert batch is not None and is_batch(text)
    assert batch.messages == split_messages(text)
    assert batch.all_problems() == []


def test_the_batch_ack_answers_the_file() -> None:
    batch = read_batch(file_of("A1", "A2"))
    assert batch is not None
    text = build_batch_ack(batch, acks_for(batch.messages))
    parsed = hl7.parse_file(text)
    fhs, [sub] = parsed.header, list(parsed)
    # FHS and BHS answer as an ACK's MSH does: sending and receiving swapped; -11 a new control
    # id, -12 the one received (the reference file / batch control id)
    assert [str(fhs[n]) for n in (3, 4, 5, 6)] == ["LISGUARD", "BB", "LAB", "HOSP"]
    assert str(fhs[12]) == "FILE7" and str(fhs[11]) not in ("", "FILE7")
    bhs = sub.header
    assert [str(bhs[n]) for n in (3, 4, 5, 6)] == ["LISGUARD", "BB", "LAB", "HOSP"]
    assert str(bhs[12]) == "BATCH7" and str(bhs[11]) not in ("", "BATCH7")
    assert [str(m.segment("MSA")[2]) for m in sub] == ["A1", "A2"]
    assert str(sub.trailer[1]) == "2"  # BTS-1: ACKs in the batch ACK
    assert len(sub.trailer) == 2  # no BTS-2 comment: the envelope was right
    assert str(parsed.trailer[1]) == "1"  # FTS-1: batches


def test_a_batch_without_fhs_is_answered_without_fhs() -> None:
    batch = read_batch(file_of("B1", fhs=False))
    assert batch is not None
    text = build_batch_ack(batch, acks_for(batch.messages))
    assert text.startswith("BHS|") and "FHS" not in text and "FTS" not in text
    parsed = hl7.parse_batch(text)
    assert str(parsed.header[12]) == "BATCH7"
    assert [str(m.segment("MSA")[1]) for m in parsed] == ["AA"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (file_of("C1", "C2", bts="BTS|5\r"), "BTS-1 says 5 messages, 2 received"),
        (FHS + MSG.format(cid="C1") + "BTS|1\rFTS|1\r", "BTS without a BHS"),
        (FHS + BHS + MSG.format(cid="C1") + "FTS|1\r", "no BTS"),
        (FHS + BHS + MSG.format(cid="C1") + "BTS|1\r", "no FTS"),
        (file_of("C1").replace("FTS|1", "FTS|3"), "FTS-1 says 3 batches, 1 received"),
        (FHS + MSG.format(cid="C1") + "FTS|1\r", "messages outside a BHS...BTS batch"),
        (MSG.format(cid="C1") + "BTS|1\r", "BTS without a BHS"),
        (file_of("C1").replace("BTS|1", "BTS|1\rstray text"), "1 line(s) outside any message"),
    ],
)
def test_a_malformed_envelope_is_read_and_noted(text: str, problem: str) -> None:
    """Every message is still there to process; the batch ACK's BTS-2 (or FTS-2) says what is
    wrong, and python-hl7 still reads the batch ACK."""
    batch = read_batch(text)
    assert batch is not None
    assert batch.messages == split_messages(text)
    assert any(problem in p for p in batch.all_problems()), batch.all_problems()
    answer = build_batch_ack(batch, acks_for(batch.messages))
    trailers = [s for s in answer.split("\r") if s[:3] in ("BTS", "FTS")]
    comments = [t.split("|")[2] for t in trailers if t.count("|") >= 2]
    assert comments and all(c.startswith(ENVELOPE_ERROR) for c in comments)
    assert any(problem in c for c in comments) or len(" ".join(comments)) >= 70
    # a BHS is always given back, even to a batch that had none (addressed as its first ACK)
    bhs = next(s for s in answer.split("\r") if s.startswith("BHS"))
    assert bhs.split("|")[4:6] == ["LAB", "HOSP"]
    parsed = hl7.parse_file(answer) if answer.startswith("FHS") else hl7.parse_batch(answer)
    msas = [m.segment("MSA") for sub in (parsed if answer.startswith("FHS") else [parsed])
            for m in sub]  # fmt: skip
    assert [str(m[2]) for m in msas] == [peek_header(m).control_id for m in batch.messages]  # type: ignore[union-attr]


def test_an_empty_batch_gets_an_empty_batch_ack() -> None:
    """A batch of zero messages (sent to meet a schedule) is answered BHS, BTS-1 0."""
    batch = read_batch(FHS + BHS + "BTS|0\rFTS|1\r")
    assert batch is not None and batch.messages == [] and batch.all_problems() == []
    answer = build_batch_ack(batch, [])
    assert [s[:3] for s in answer.split("\r")] == ["FHS", "BHS", "BTS", "FTS"]
    assert answer.split("\r")[2] == "BTS|0"


def test_two_batches_in_a_file_are_answered_batch_by_batch() -> None:
    second = BHS.replace("BATCH7", "BATCH8") + MSG.format(cid="D3") + "BTS|1\r"
    text = FHS + BHS + MSG.format(cid="D1") + MSG.format(cid="D2") + "BTS|2\r" + second
    batch = read_batch(text + "FTS|2\r")
    assert batch is not None and batch.all_problems() == []
    parsed = hl7.parse_file(build_batch_ack(batch, acks_for(batch.messages)))
    assert [str(b.header[12]) for b in parsed] == ["BATCH7", "BATCH8"]
    assert [[str(m.segment("MSA")[2]) for m in b] for b in parsed] == [["D1", "D2"], ["D3"]]
    assert [str(b.trailer[1]) for b in parsed] == ["2", "1"]
    assert str(parsed.trailer[1]) == "2"


def test_custom_delimiters_of_the_batch_are_kept_and_comments_escaped() -> None:
    fhs = "FHS#$%@!#LAB#HOSP#LG#BB#2026####F#1\r"
    bhs = "BHS#$%@!#LAB#HOSP#LG#BB#2026####B#1\r"
    msg = "MSH#$%@!#LAB#HOSP#LG#BB#2026##ORM$O01#E1#P#2.5.1\rPID#1\r"
    batch = read_batch(fhs + bhs + msg + "BTS#9\rFTS#1\r")
    assert batch is not None
    assert batch.control_id == "B"  # BHS-11 (the "1" after it is BHS-12)
    answer = build_batch_ack(batch, acks_for(batch.messages))
    bts = next(s for s in answer.split("\r") if s.startswith("BTS"))
    assert bts.startswith("BTS#1#" + ENVELOPE_ERROR)


def test_the_ack_count_must_match_the_messages() -> None:
    batch = read_batch(file_of("E1", "E2"))
    assert batch is not None
    with pytest.raises(ValueError):
        build_batch_ack(batch, acks_for(batch.messages)[:1])


def test_error_acks_in_a_batch_ack_parse() -> None:
    batch = read_batch(file_of("F1", "F2"))
    assert batch is not None
    [first, second] = batch.messages
    err = AckError("101", "MSH-10 (control id) is empty", "MSH", 10)
    acks = [
        *responses(peek_header(first), ok=True, batched=True),  # type: ignore[arg-type]
        *responses(peek_header(second), ok=False, error=err, batched=True),  # type: ignore[arg-type]
    ]
    parsed = hl7.parse_file(build_batch_ack(batch, acks))
    assert [str(m.segment("MSA")[1]) for m in parsed[0]] == ["AA", "AE"]
    assert str(parsed[0][1].segment("ERR")[3][0][0]) == "101"
