"""ACK building: MSA codes by ack mode, header swap, ERR, escaping; hl7apy reads them."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from lisguard.hl7v2.ack import (
    AckError,
    Header,
    acknowledged,
    build_ack,
    escape,
    peek_header,
    responses,
)
from lisguard.hl7v2.escapes import Encoding
from lisguard.hl7v2.reader import parse

HEADER = Header(
    sending_application="LAB",
    sending_facility="HOSP",
    receiving_application="LISGUARD",
    receiving_facility="BB",
    control_id="CTRL-1",
    trigger="O01",
    processing_id="P",
    version="2.5.1",
)


def msa(ack: str) -> list[str]:
    seg = next(s for s in ack.split("\r") if s.startswith("MSA"))
    return seg.split("|")


def test_original_mode_accept_swaps_apps_and_echoes_control_id() -> None:
    [ack] = responses(HEADER, ok=True)
    msg = parse(ack)
    msh = msg.segments[0]
    assert (msh.get(3), msh.get(4), msh.get(5), msh.get(6)) == ("LISGUARD", "BB", "LAB", "HOSP")
    assert msg.message_type == "ACK^O01"
    assert msa(ack)[1:3] == ["AA", "CTRL-1"]
    assert msh.get(10) != "CTRL-1"


def test_original_mode_error_and_reject() -> None:
    err = AckError("102", "bad | value ^ here")
    [ae] = responses(HEADER, ok=False, error=err)
    [ar] = responses(HEADER, ok=False, rejected=True, error=err)
    assert msa(ae)[1] == "AE"
    assert msa(ar)[1] == "AR"
    err_seg = parse(ae).segment("ERR")
    assert err_seg is not None
    assert err_seg.get(3, 1) == "102"
    assert err_seg.get(8) == "bad | value ^ here"


@pytest.mark.parametrize(
    ("accept", "application", "ok", "expected"),
    [
        ("AL", "AL", True, ["CA", "AA"]),
        ("AL", "NE", True, ["CA"]),
        ("NE", "AL", True, ["AA"]),
        ("ER", "AL", True, ["AA"]),
        ("ER", "AL", False, ["CE", "AE"]),
        ("AL", "ER", True, ["CA"]),
        ("AL", "ER", False, ["CE", "AE"]),
        ("SU", "SU", True, ["CA", "AA"]),
        ("NE", "NE", True, ["CA"]),  # always_reply: an MLLP client is never left waiting
    ],
)
def test_enhanced_mode(accept: str, application: str, ok: bool, expected: list[str]) -> None:
    header = Header(control_id="C9", accept_ack_type=accept, application_ack_type=application)
    err = None if ok else AckError("102", "bad")
    assert [msa(a)[1] for a in responses(header, ok=ok, error=err)] == expected


def test_enhanced_never_ack_honoured_when_asked() -> None:
    header = Header(control_id="C9", accept_ack_type="NE", application_ack_type="NE")
    assert responses(header, ok=True, always_reply=False) == []


@pytest.mark.parametrize("accept", ["", "AL", "NE", "ER", "SU", "xx"])
@pytest.mark.parametrize("application", ["", "AL", "NE", "ER", "SU"])
@pytest.mark.parametrize("ok", [True, False])
@pytest.mark.parametrize("always_reply", [True, False])
def test_acknowledged_says_whether_responses_answers(
    accept: str, application: str, ok: bool, always_reply: bool
) -> None:
    header = Header(control_id="C9", accept_ack_type=accept, application_ack_type=application)
    err = None if ok else AckError("102", "bad")
    answered = responses(header, ok=ok, error=err, always_reply=always_reply)
    assert acknowledged(header, ok=ok, always_reply=always_reply) == bool(answered)


def test_escape_uses_the_message_delimiters() -> None:
    enc = Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!")
    assert escape("a#b$c%d@e!f", enc) == "a@F@b@S@c@R@d@E@e@T@f"


def test_custom_delimiters_in_the_ack() -> None:
    enc = Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!")
    header = Header(control_id="X#1", trigger="R01", encoding=enc)
    [ack] = responses(header, ok=True)
    assert ack.startswith("MSH#$%@!#")
    assert parse(ack).segment("MSA") is not None
    assert parse(ack).segment("MSA").get(2) == "X#1"  # type: ignore[union-attr]


def test_peek_header_reads_a_message_that_does_not_parse() -> None:
    header = peek_header("MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01|C77|P|2.3\rgarbage here")
    assert header is not None
    assert (header.control_id, header.trigger, header.version) == ("C77", "O01", "2.3")
    assert peek_header("not hl7") is None


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_hl7apy_reads_every_ack(version: str) -> None:
    header = Header(control_id="C1", trigger="O01", version=version, sending_application="LAB")
    for ack in (
        build_ack(header, "AA"),
        build_ack(header, "AE", error=AckError("100", "Segment sequence error", "OBR", 4)),
    ):
        msg = parse_message(ack, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
        assert msg.msa.msa_2.value == "C1"
