"""ACK building: MSA codes by ack mode, header swap, ERR by version, escaping, character set;
hl7apy and python-hl7 read them."""

from __future__ import annotations

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from lisguard.hl7v2.ack import (
    AckError,
    Header,
    ack_codec,
    acknowledged,
    build_ack,
    escape,
    peek_header,
    responses,
    version_of,
    wire_bytes,
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
        # MSH-15/16 honoured (table 0155): NE never, ER on error only. This used to be ["CA"]
        # (ingest.always_reply defaulted true and answered what nobody asked for).
        ("NE", "NE", True, []),
        ("NE", "NE", False, []),
        ("ER", "ER", True, []),
        ("ER", "ER", False, ["CE", "AE"]),
        ("ER", "NE", False, ["CE"]),
    ],
)
def test_enhanced_mode(accept: str, application: str, ok: bool, expected: list[str]) -> None:
    header = Header(control_id="C9", accept_ack_type=accept, application_ack_type=application)
    err = None if ok else AckError("102", "bad")
    assert [msa(a)[1] for a in responses(header, ok=ok, error=err)] == expected


def test_enhanced_never_ack_honoured_when_asked() -> None:
    header = Header(control_id="C9", accept_ack_type="NE", application_ack_type="NE")
    assert responses(header, ok=True, always_reply=False) == []


@pytest.mark.parametrize(("accept", "application"), [("NE", "NE"), ("ER", "ER"), ("ER", "NE")])
def test_always_reply_is_an_explicit_override(accept: str, application: str) -> None:
    header = Header(control_id="C9", accept_ack_type=accept, application_ack_type=application)
    assert [msa(a)[1] for a in responses(header, ok=True, always_reply=True)] == ["CA"]


@pytest.mark.parametrize("accept", ["", "AL", "NE", "ER", "SU"])
@pytest.mark.parametrize("application", ["", "AL", "NE", "ER", "SU"])
@pytest.mark.parametrize(
    ("ok", "rejected", "code"), [(True, False, "AA"), (False, False, "AE"), (False, True, "AR")]
)
def test_a_message_of_a_batch_gets_exactly_one_application_ack(
    accept: str, application: str, ok: bool, rejected: bool, code: str
) -> None:
    header = Header(control_id="B1", accept_ack_type=accept, application_ack_type=application)
    err = None if ok else AckError("102", "bad")
    acks = responses(header, ok=ok, rejected=rejected, error=err, batched=True)
    assert [msa(a)[1:3] for a in acks] == [[code, "B1"]]


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


# ----------------------------------------------------------------------------- by MSH-12 version

ERR_WITH_LOCATION = AckError("101", "MSH-10 (control id) is empty", "MSH", 10)


def segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name)).split("|")


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3", "2.3.1", "2.4"])
def test_before_2_5_the_error_is_in_msa_3_and_err_1_only(version: str) -> None:
    header = Header(control_id="C1", trigger="O01", version=version)
    ack = build_ack(header, "AE", error=ERR_WITH_LOCATION)
    assert segment(ack, "MSH")[11] == version  # MSH-12 echoed
    assert segment(ack, "MSA") == ["MSA", "AE", "C1", "MSH-10 (control id) is empty"]
    # ERR-1 (ELD): segment^sequence^field^code&text&table; ERR has no other field before v2.5
    assert segment(ack, "ERR") == ["ERR", "MSH^1^10^101&Required field missing&HL70357"]


@pytest.mark.parametrize("version", ["2.5", "2.5.1", "2.6"])
def test_2_5_and_2_6_keep_msa_3_and_err_1_beside_err_2_3_4_8(version: str) -> None:
    header = Header(control_id="C1", trigger="O01", version=version)
    ack = build_ack(header, "AE", error=ERR_WITH_LOCATION)
    assert segment(ack, "MSH")[11] == version
    assert segment(ack, "MSA")[3] == "MSH-10 (control id) is empty"
    err = segment(ack, "ERR")
    assert err[1] == "MSH^1^10^101&Required field missing&HL70357"
    assert err[2] == "MSH^1^10"  # ERR-2 error location
    assert err[3] == "101^Required field missing^HL70357"  # ERR-3 HL7 error code
    assert err[4] == "E"  # ERR-4 severity
    assert err[8] == "MSH-10 (control id) is empty"  # ERR-8 user message


@pytest.mark.parametrize("version", ["2.7", "2.7.1", "2.8", "2.8.2", "2.9"])
def test_2_7_and_later_have_neither_msa_3_nor_err_1(version: str) -> None:
    """Both withdrawn in v2.7: the text goes in ERR-8, the code in ERR-3, the place in ERR-2."""
    header = Header(control_id="C1", trigger="O01", version=version)
    ack = build_ack(header, "AE", error=ERR_WITH_LOCATION)
    assert segment(ack, "MSH")[11] == version
    assert segment(ack, "MSA") == ["MSA", "AE", "C1"]
    err = segment(ack, "ERR")
    assert err[1] == ""
    assert err[2:5] == ["MSH^1^10", "101^Required field missing^HL70357", "E"]
    assert err[8] == "MSH-10 (control id) is empty"
    parsed = hl7.parse(ack)
    assert len(parsed.segment("MSA")) == 3  # MSA, MSA-1, MSA-2: nothing more


def test_an_unreadable_version_gets_the_2_5_1_shape_and_is_echoed() -> None:
    assert version_of("") == version_of("junk") == (2, 5, 1)
    assert version_of("2.8") == (2, 8)
    ack = build_ack(Header(control_id="C1", version="junk"), "AE", error=ERR_WITH_LOCATION)
    assert segment(ack, "MSH")[11] == "junk"
    assert segment(ack, "ERR")[1].startswith("MSH^1^10^101")
    assert segment(ack, "MSA")[3]


@pytest.mark.parametrize(
    ("version", "code"), [("2.5.1", "207"), ("2.6", "207"), ("2.7", "104"), ("2.8", "104")]
)
def test_value_too_long_is_104_where_table_0357_has_it(version: str, code: str) -> None:
    """104 "Value too long" entered table 0357 in v2.7; an older receiver gets 207."""
    err = AckError("104", "frame of 9000 bytes exceeds the limit of 2048 bytes")
    ack = build_ack(Header(control_id="BIG", version=version), "AR", error=err)
    err_seg = segment(ack, "ERR")
    assert err_seg[3].split("^")[0] == code
    assert "9000 bytes" in err_seg[8]


# ------------------------------------------------------------------------------ character set

LATIN1_HEADER = Header(
    sending_application="LABOR",
    sending_facility="KLINIKUM MÜNCHEN",
    control_id="ÄNDERUNG1",
    trigger="O01",
    version="2.5.1",
    charset="8859/1",
)


def test_msh_18_is_echoed_and_the_bytes_are_in_that_set() -> None:
    [ack] = responses(LATIN1_HEADER, ok=False, error=AckError("102", "bad"))
    assert segment(ack, "MSH")[17] == "8859/1"
    raw = wire_bytes(ack)
    assert ack_codec(ack) == "latin-1"
    assert raw == ack.encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the bytes are Latin-1, as declared, not UTF-8
    parsed = hl7.parse(raw.decode("latin-1"))
    assert str(parsed.segment("MSA")[2]) == "ÄNDERUNG1"
    assert str(parsed.segment("MSH")[6]) == "KLINIKUM MÜNCHEN"
    assert str(parsed.segment("MSH")[18]) == "8859/1"


def test_no_msh_18_and_ascii_stays_undeclared() -> None:
    [ack] = responses(HEADER, ok=True)
    assert len(segment(ack, "MSH")) == 12  # MSH-12 is the last field
    assert wire_bytes(ack) == ack.encode("ascii")


@pytest.mark.parametrize("declared", ["", "ASCII", "8859/1", "NOT A CHARSET"])
def test_an_ack_the_declared_set_cannot_hold_declares_utf_8(declared: str) -> None:
    """Non-ASCII the sender's MSH-18 cannot write (or it declared none, which means ASCII): the
    ACK says UNICODE UTF-8 and is written so, never bytes its own MSH-18 does not describe."""
    header = HEADER._replace(control_id="中文1", charset=declared)
    [ack] = responses(header, ok=True)
    assert segment(ack, "MSH")[17] == "UNICODE UTF-8"
    raw = wire_bytes(ack)
    assert raw == ack.encode("utf-8")
    assert str(hl7.parse(raw.decode("utf-8")).segment("MSA")[2]) == "中文1"


def test_a_repeating_msh_18_is_echoed_whole_and_its_first_set_used() -> None:
    header = LATIN1_HEADER._replace(charset="8859/1~ISO IR87")
    [ack] = responses(header, ok=True)
    assert segment(ack, "MSH")[17] == "8859/1~ISO IR87"
    assert wire_bytes(ack) == ack.encode("latin-1")


def test_peek_header_and_message_header_read_msh_18() -> None:
    from lisguard.intake import message_header

    text = "MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01|C1|P|2.5.1||||||8859/1\rPID|1"
    assert peek_header(text) is not None
    assert peek_header(text).charset == "8859/1"  # type: ignore[union-attr]
    assert message_header(parse(text)).charset == "8859/1"


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_python_hl7_reads_every_ack(version: str) -> None:
    header = Header(control_id="C1", trigger="O01", version=version, sending_application="LAB")
    for ack in (
        build_ack(header, "AA"),
        build_ack(header, "AE", error=AckError("100", "Segment sequence error", "OBR", 4)),
        build_ack(header._replace(charset="8859/1"), "AR", error=AckError("104", "too | long")),
    ):
        message = hl7.parse(wire_bytes(ack).decode(ack_codec(ack)))
        assert str(message.segment("MSH")[12]) == version
        assert str(message.segment("MSA")[2]) == "C1"
